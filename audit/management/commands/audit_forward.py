"""``manage.py audit_forward``: forward the audit events not yet sent to the syslog collector."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit import forwarding


class Command(BaseCommand):
    help = (
        "Send the audit events the collector at PUREBOOT_SYSLOG_URL has not received yet "
        "(RFC 5424 over TCP or TLS), once; the periodic task does the same every "
        "PUREBOOT_SYSLOG_INTERVAL_SECONDS."
    )

    def handle(self, *args, **options) -> None:
        try:
            report = forwarding.forward()
        except forwarding.ForwardError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(str(report))
