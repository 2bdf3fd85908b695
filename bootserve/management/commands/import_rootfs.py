"""Import a root file system template for diskless nodes from a tar archive."""

from __future__ import annotations

import getpass
import socket
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bootserve import nfsroot
from workflows import rootfs
from workflows.models import RootFilesystem


class Command(BaseCommand):
    help = (
        "Import a root file system (a .tar.gz or .tar.zst of a whole system) as a read-only "
        "NFS root template for diskless nodes, under PUREBOOT_NFSROOT_DIR/templates/NAME; its "
        "kernel and initramfs are copied into the boot root (nfsroot/NAME/). Hostile archives "
        "('..', absolute names, links out of the root, device nodes, decompression bombs) are "
        "refused whole, leaving nothing behind. The ganesha config is rewritten and reloaded."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the template's name, as an nfs_root task's root")
        parser.add_argument("archive", help="the .tar.gz or .tar.zst file")
        parser.add_argument("--arch", required=True, choices=rootfs.ARCHES)
        parser.add_argument(
            "--kernel",
            help="the kernel's path inside the archive (default: boot/firmware/kernel8.img "
            "and the like on a Raspberry Pi system, else the newest boot/vmlinuz-*)",
        )
        parser.add_argument(
            "--initrd",
            help="the initramfs's path inside the archive (with --kernel); it must carry "
            "PureBoot's NFS root script (templates/nfsroot/README.md)",
        )
        parser.add_argument(
            "--replace", action="store_true", help="replace an existing template of that name"
        )

    def handle(self, *args, **options):
        name = options["name"]
        exists = RootFilesystem.objects.filter(name=name).exists()
        if options["replace"] and exists and not rootfs.nodes_using(name):
            nfsroot.withdraw_template(name)  # so that ganesha looks at the new tree
        try:
            template = rootfs.import_rootfs(
                name,
                Path(options["archive"]),
                options["arch"],
                kernel=options["kernel"],
                initrd=options["initrd"],
                replace=options["replace"],
                actor=f"host:{getpass.getuser()}@{socket.gethostname()}",
            )
        except rootfs.RootfsError as exc:
            raise CommandError(str(exc)) from None
        finally:
            nfsroot.apply_exports()
        self.stdout.write(
            f"{template}: {template.files} files, {template.size} bytes, kernel {template.kernel}, "
            f"initramfs {template.initrd}; exported as /pureboot/templates/{template.name}"
        )
