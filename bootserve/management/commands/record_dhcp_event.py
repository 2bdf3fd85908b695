"""Record one dnsmasq lease event as a DHCP boot record (dnsmasq's dhcp-script)."""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from bootserve import records


class Command(BaseCommand):
    help = (
        "Record a dnsmasq lease event as a DHCP boot record. dnsmasq runs its dhcp-script as "
        "`SCRIPT add|old|del MAC IP [HOSTNAME]` with DNSMASQ_VENDOR_CLASS, DNSMASQ_TAGS, "
        "DNSMASQ_SUPPLIED_HOSTNAME and DNSMASQ_TIME_REMAINING in its environment; point "
        "PUREBOOT_DHCP_SCRIPT at a wrapper that runs this command with those arguments. "
        "Full DHCP mode only: proxy DHCP grants no leases, so dnsmasq runs no script there."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", help="add (lease granted), old (renewed), del (ended)")
        parser.add_argument("mac", help="the client's MAC address")
        parser.add_argument("address", help="the leased IP address")
        parser.add_argument("hostname", nargs="?", default="", help="dnsmasq's host name")

    def handle(self, *args, action, mac, address, hostname, **options):
        env = os.environ
        try:
            row = records.record_dhcp_event(
                action,
                mac,
                address,
                vendor_class=env.get("DNSMASQ_VENDOR_CLASS", ""),
                tags=env.get("DNSMASQ_TAGS", ""),
                hostname=env.get("DNSMASQ_SUPPLIED_HOSTNAME", "") or hostname,
                remaining=env.get("DNSMASQ_TIME_REMAINING", ""),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except DatabaseError as exc:
            raise CommandError(f"DHCP event not recorded: {exc}") from None
        if options["verbosity"] > 1:
            self.stdout.write(f"recorded: {row}")
