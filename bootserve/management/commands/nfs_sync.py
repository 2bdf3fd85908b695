"""Reconcile every diskless node's NFS overlay and the ganesha config with the database."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bootserve import ganesha, nfsroot


class Command(BaseCommand):
    help = (
        "Make, keep or remove each node's writable NFS overlay as its lifecycle state says "
        "(made from installing on, removed on retire and deprovision), rewrite "
        "PUREBOOT_NFS_GANESHA_CONFIG and reload ganesha. Safe to run at any time."
    )

    def handle(self, *args, **options):
        if not settings.PUREBOOT_NFS_SERVER:
            raise CommandError("NFS root is off: PUREBOOT_NFS_SERVER is not set")
        try:
            counts = nfsroot.sync_all()
        except (nfsroot.NfsRootError, ganesha.GaneshaConfigError) as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            where = settings.PUREBOOT_NFSROOT_DIR
            raise CommandError(f"cannot write under {where}: {exc}") from None
        self.stdout.write(
            f"overlays: {counts['created']} made, {counts['removed']} removed, "
            f"{counts['held']} held (failed or migrating), {counts['unchanged']} unchanged"
        )
