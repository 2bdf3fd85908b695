"""Delete boot records older than the retention period."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bootserve import records


class Command(BaseCommand):
    help = (
        "Delete boot records whose last request is older than --days (default: "
        "PUREBOOT_BOOT_RECORD_DAYS). The beat task bootserve.prune_boot_records does the "
        "same every hour."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", metavar="DAYS", help="keep this many days (1-36500)")

    def handle(self, *args, days=None, **options):
        if days is None:
            days = settings.PUREBOOT_BOOT_RECORD_DAYS
        elif not (days.isascii() and days.isdigit() and 1 <= int(days) <= 36_500):
            raise CommandError(f"--days {days[:20]!r}: a whole number of days from 1 to 36500")
        days = int(days)
        deleted = records.prune(days)
        self.stdout.write(f"deleted {deleted} boot record(s) older than {days} day(s)")
