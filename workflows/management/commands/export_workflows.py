"""Write each workflow's latest version to DIR/<name>.yaml, exactly as saved."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from workflows.models import Workflow


class Command(BaseCommand):
    help = "Export the latest version of every workflow to DIR/<name>.yaml."

    def add_arguments(self, parser):
        parser.add_argument("directory")

    def handle(self, *args, directory, **options):
        target = Path(directory)
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"{directory}: {exc}") from None
        count = 0
        for workflow in Workflow.objects.filter(archived_at__isnull=True):
            version = workflow.latest_version
            if version is None:
                continue
            # Write to a temporary file and rename, so a reader never sees half a file.
            fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{workflow.name}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(version.content)
            os.replace(tmp, target / f"{workflow.name}.yaml")
            count += 1
            self.stdout.write(f"{workflow.name} v{version.number}")
        self.stdout.write(self.style.SUCCESS(f"exported {count} workflows to {target}"))
