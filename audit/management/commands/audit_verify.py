"""``manage.py audit_verify``: check the audit trail's hash chain end to end."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.services import verify_chain


class Command(BaseCommand):
    help = "Recompute every audit event's hash and check the chain is contiguous and linked."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=2000,
            help="Events fetched per database round trip (default 2000).",
        )

    def handle(self, *args, chunk_size: int, **options) -> None:
        if chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1")
        report = verify_chain(chunk_size=chunk_size)
        if not report.intact:
            raise CommandError(str(report))
        self.stdout.write(self.style.SUCCESS(str(report)))
