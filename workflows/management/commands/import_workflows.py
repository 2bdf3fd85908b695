"""Import workflow YAML files; unchanged content makes no new version."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from nodes.services import SYSTEM, Actor
from workflows.checks import check_definition
from workflows.definitions import MAX_DOCUMENT_BYTES, DefinitionError, content_hash, parse
from workflows.models import Workflow
from workflows.services import save_workflow

SUFFIXES = {".yaml", ".yml"}


def _files(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"{raw}: no such file or folder")
    return found


class Command(BaseCommand):
    help = (
        "Import workflow definitions from YAML files or folders (*.yaml, *.yml). "
        "Idempotent: a file whose content equals the workflow's latest version creates "
        "nothing. Every file is validated before anything is saved."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", help="files or folders")
        parser.add_argument(
            "--dry-run", action="store_true", help="report what would change; save nothing"
        )
        parser.add_argument(
            "--as-user", default="", help="record this username as the author (default: system)"
        )

    def handle(self, *args, paths, dry_run, as_user, **options):
        actor = SYSTEM
        if as_user:
            from django.contrib.auth import get_user_model

            user = get_user_model().objects.filter(username=as_user).first()
            if user is None:
                raise CommandError(f"--as-user: no user {as_user!r}")
            actor = Actor.of(user)
        files = _files(paths)
        if not files:
            raise CommandError("no *.yaml or *.yml files found")
        parsed = []
        errors = []
        for path in files:
            try:
                raw = path.read_bytes()
                if len(raw) > MAX_DOCUMENT_BYTES:
                    raise DefinitionError(f"document is larger than {MAX_DOCUMENT_BYTES} bytes")
                definition = parse(raw)
                for warning in check_definition(definition).warnings:
                    self.stderr.write(f"{path}: {warning}")
                parsed.append((path, raw.decode("utf-8"), definition))
            except (DefinitionError, OSError) as exc:
                errors.append(f"{path}: {exc}")
        names = [d.name for _, _, d in parsed]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            errors.append(f"workflow names defined in more than one file: {', '.join(dupes)}")
        if errors:
            raise CommandError("nothing imported:\n  " + "\n  ".join(errors))
        with transaction.atomic():  # all files or none
            created, unchanged = self._save(parsed, actor, dry_run)
        prefix = "dry run: " if dry_run else ""
        self.stdout.write(self.style.SUCCESS(f"{prefix}{created} changed, {unchanged} unchanged"))

    def _save(self, parsed, actor, dry_run) -> tuple[int, int]:
        created = unchanged = 0
        for path, text, definition in parsed:
            workflow = Workflow.objects.filter(name=definition.name).first()
            latest = workflow.latest_version if workflow else None
            if latest is not None and latest.content_hash == content_hash(text):
                unchanged += 1
                self.stdout.write(f"unchanged  {definition.name} (v{latest.number})  {path}")
                continue
            number = (latest.number if latest else 0) + 1
            verb = "new" if workflow is None else "update"
            if dry_run:
                self.stdout.write(f"would {verb:7} {definition.name} -> v{number}  {path}")
            else:
                result = save_workflow(text, actor, definition=definition)
                self.stdout.write(
                    f"{verb:10} {definition.name} -> v{result.version.number}  {path}"
                )
            created += 1
        return created, unchanged
