"""Remove a root file system template that no live node boots."""

from __future__ import annotations

import getpass
import socket

from django.core.management.base import BaseCommand, CommandError

from bootserve import nfsroot
from workflows import rootfs


class Command(BaseCommand):
    help = (
        "Remove a root file system template: its export, its tree and its boot files. "
        "Refused while a node that is not retired boots it."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name: str, **options):
        if not rootfs.nodes_using(name):
            nfsroot.withdraw_template(name)  # unexported before its tree goes
        try:
            rootfs.remove_rootfs(name, actor=f"host:{getpass.getuser()}@{socket.gethostname()}")
        except rootfs.RootfsError as exc:
            raise CommandError(str(exc)) from None
        finally:
            nfsroot.apply_exports()
        self.stdout.write(f"root file system {name} removed")
