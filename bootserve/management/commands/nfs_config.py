"""Write or check the nfs-ganesha configuration of NFS roots."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bootserve import ganesha, nfsroot
from workflows import rootfs
from workflows.models import RootFilesystem


class Command(BaseCommand):
    help = (
        "Render the nfs-ganesha configuration of NFS roots (one read-only export per template, "
        "one read-write export per node overlay) and write it atomically, or print it. "
        "--check validates it instead: every export's folder exists, no overlay is closed for "
        "want of an address, and the written file is current."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--output",
            "-o",
            help="write here (default: PUREBOOT_NFS_GANESHA_CONFIG; neither: standard output)",
        )
        parser.add_argument("--check", action="store_true", help="validate; write nothing")
        parser.add_argument(
            "--reload",
            action="store_true",
            help="after writing, SIGHUP the ganesha of PUREBOOT_NFS_GANESHA_PIDFILE",
        )

    def handle(self, *args, **options):
        exports = nfsroot.exports()
        try:
            text = ganesha.render_ganesha_config(exports, port=settings.PUREBOOT_NFS_PORT)
        except ganesha.GaneshaConfigError as exc:
            raise CommandError(str(exc)) from None
        target = options["output"] or settings.PUREBOOT_NFS_GANESHA_CONFIG
        if options["check"]:
            self._check(exports, text, target)
            return
        if not target:
            self.stdout.write(text, ending="")
            return
        try:
            written = ganesha.write_config(Path(target), text)
        except OSError as exc:
            raise CommandError(f"cannot write {target}: {exc}") from None
        self.stderr.write(f"{'wrote' if written else 'unchanged:'} {target}")
        if options["reload"]:
            pidfile = settings.PUREBOOT_NFS_GANESHA_PIDFILE
            if not pidfile:
                raise CommandError("--reload: PUREBOOT_NFS_GANESHA_PIDFILE is not set")
            try:
                pid = ganesha.reload(pidfile)
            except ganesha.GaneshaReloadError as exc:
                raise CommandError(str(exc)) from None
            self.stderr.write(f"ganesha (pid {pid}) re-reads its exports")

    def _check(self, exports: list[ganesha.Export], text: str, target: str) -> None:
        problems = ganesha.problems(exports)
        problems += [
            f"root file system {t.name}: {rootfs.template_path(t.name)} is missing (not exported; "
            f"import it again with manage.py import_rootfs {t.name} ARCHIVE --replace)"
            for t in RootFilesystem.objects.order_by("name")
            if not rootfs.template_path(t.name).is_dir()
        ]
        if not settings.PUREBOOT_NFS_SERVER:
            problems.append("PUREBOOT_NFS_SERVER is not set: nodes are given no NFS root")
        if target:
            try:
                current = Path(target).read_text()
            except OSError as exc:
                current = None
                problems.append(f"{target}: {exc.strerror or exc}")
            if current is not None and current != text:
                problems.append(f"{target} is not current: run manage.py nfs_sync")
        if problems:
            raise CommandError("; ".join(problems))
        self.stdout.write(f"ganesha config OK: {len(exports)} exports")
