"""``manage.py build_agent``: build the in-RAM agent from Debian packages and import it."""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from agent.build import AGENT_VERSION, BuildError, image
from workflows.bootimages import BootImageExists, BootImageFolderTaken, install_boot_image

FAMILY = "pureboot-agent"


class Command(BaseCommand):
    help = (
        "Build the PureBoot agent (Debian kernel + busybox + util-linux, nvme-cli, hdparm, "
        "sg3-utils, curl, open-iscsi, jq) for one architecture, reproducibly, and import it "
        "as the boot image machines get when they need the agent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--arch", default="x86_64", choices=sorted(image.TRIPLET))
        parser.add_argument(
            "--cache",
            help="where downloaded and unpacked packages are kept (default: "
            "PUREBOOT_VAR_DIR/agent-build)",
        )
        parser.add_argument("--output", help="where vmlinuz, initrd.img and manifest.json go")
        parser.add_argument(
            "--ca-file", help="a PEM CA certificate the agent trusts, besides Debian's"
        )
        parser.add_argument("--name", help="the boot image's name (default pureboot-agent-<arch>)")
        parser.add_argument("--replace", action="store_true", help="replace an existing image")
        parser.add_argument("--no-import", action="store_true", help="build only")

    def handle(self, *args, arch, cache, output, ca_file, name, replace, no_import, **options):
        name = name or f"{FAMILY}-{arch}"
        cache_dir = Path(cache) if cache else Path(settings.VAR_DIR) / "agent-build"
        out_dir = Path(output) if output else Path(settings.VAR_DIR) / "agent-build" / "out" / arch
        ca = Path(ca_file) if ca_file else None
        if ca is not None and not ca.is_file():
            raise CommandError(f"--ca-file {ca}: no such file")
        started = time.monotonic()
        try:
            built = image.build(arch, cache_dir, out_dir, ca_file=ca)
        except BuildError as exc:
            raise CommandError(f"cannot build the agent: {exc}") from None
        files = built.manifest["files"]
        self.stdout.write(
            f"built the agent for {arch} (kernel {built.manifest['kernel']}, "
            f"{len(built.manifest['packages'])} packages) in {time.monotonic() - started:.0f}s"
        )
        for role, meta in sorted(files.items()):
            self.stdout.write(
                f"  {role:7} {out_dir / meta['name']}  {meta['size']} bytes  "
                f"sha256 {meta['sha256']}"
            )
        if no_import:
            return
        try:
            install_boot_image(
                name=name,
                family=FAMILY,
                version=f"{AGENT_VERSION}+{built.manifest['kernel']}",
                arch=arch,
                sources={"kernel": built.kernel, "initrd": built.initrd},
                files=files,
                source=f"manage.py build_agent --arch {arch}",
                replace=replace,
            )
        except BootImageExists:
            raise CommandError(f"boot image {name} exists; use --replace to replace it") from None
        except BootImageFolderTaken as exc:
            raise CommandError(f"--name {name}: {exc}") from None
        self.stdout.write(self.style.SUCCESS(f"imported as boot image {name}"))
