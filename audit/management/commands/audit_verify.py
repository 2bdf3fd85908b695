"""``manage.py audit_verify``: check the audit trail's hash chain end to end."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.clearing import verify_export
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
        parser.add_argument(
            "--export",
            metavar="FILE",
            help="Check an export file written by an approved audit clearing instead.",
        )

    def handle(self, *args, chunk_size: int, export: str | None = None, **options) -> None:
        if export:
            report = verify_export(Path(export))
            if not report.intact:
                raise CommandError(f"export {export}: {report.problem}")
            self.stdout.write(
                self.style.SUCCESS(
                    f"export intact: {report.count} events, seq {report.from_seq}-"
                    f"{report.through_seq}"
                )
            )
            return
        if chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1")
        report = verify_chain(chunk_size=chunk_size)
        if not report.intact:
            raise CommandError(str(report))
        self.stdout.write(self.style.SUCCESS(str(report)))
