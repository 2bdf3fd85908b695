"""Rewrite the dnsmasq hosts dir from the database."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from bootserve import dhcp


class Command(BaseCommand):
    help = (
        "Rebuild the dnsmasq hosts dir (PUREBOOT_DHCP_HOSTSDIR) from the database: one file "
        "per node saying which of its MACs dnsmasq answers (Rule E). Safe to run at any time."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--hostsdir", help="the hosts dir to write (default: PUREBOOT_DHCP_HOSTSDIR)"
        )

    def handle(self, *args, hostsdir=None, **options):
        try:
            counts = dhcp.rebuild_hostsdir(hostsdir or None)
        except dhcp.DhcpConfigError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"cannot write the hosts dir: {exc}") from None
        where = hostsdir or dhcp.configured_hostsdir()
        self.stdout.write(
            f"{where}: {counts['answered']} MACs answered, {counts['ignored']} ignored, "
            f"{counts['removed']} removed MACs ignored; {counts['written']} files written"
        )
