"""Print (or write) the Samba share through which Windows Setup reads install.wim."""

from __future__ import annotations

import pwd
import re
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pureboot.files import atomic_write

DEFAULT_SHARE = "pureboot-boot"
_SHARE = re.compile(r"[A-Za-z0-9._-]{1,80}")


def share_name() -> str:
    """The share PUREBOOT_WINDOWS_SHARE names (``\\\\host\\<share>``), else the default."""
    unc = settings.PUREBOOT_WINDOWS_SHARE
    return unc.rstrip("\\").rsplit("\\", 1)[-1] if unc else DEFAULT_SHARE


def render(name: str, path: Path, owner: str) -> str:
    """A read-only guest share of the boot root: nothing Setup reads there is secret.

    Only boot images' files are in the boot root, which /boot/files serves
    over HTTP to anyone on the boot network anyway (each node's own answers
    come from the controller with its token); staging folders of imports in
    progress (dot names) are hidden and refused. smbd reads as ``owner``, the
    boot root's owner: imports write folders only their owner may read.
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", owner):
        raise CommandError(f"the boot root's owner {owner!r} cannot be written in smb.conf")
    if not _SHARE.fullmatch(name):
        raise CommandError(f"share name {name!r}: letters, digits, . _ - (at most 80)")
    if re.search(r"[\x00-\x1f\\]", str(path)):
        raise CommandError(f"boot root {str(path)!r} cannot be written in smb.conf")
    return (
        "# PureBoot: the boot root, read-only, for Windows Setup to read install.wim\n"
        "# (manage.py smb_config; PUREBOOT_WINDOWS_SHARE = \\\\<this host>\\" + name + ")\n"
        f"[{name}]\n"
        f"   path = {path}\n"
        "   comment = PureBoot boot images (read-only)\n"
        "   read only = yes\n"
        "   guest ok = yes\n"
        f"   force user = {owner}\n"
        "   browseable = no\n"
        "   follow symlinks = no\n"
        "   wide links = no\n"
        "   hide dot files = yes\n"
        "   veto files = /.*/\n"
        "   store dos attributes = no\n"
    )


class Command(BaseCommand):
    help = (
        "Print the Samba share (a [share] section for smb.conf) that exports the boot root "
        "read-only to guests, from which Windows Setup reads a boot image's install.wim; "
        "the share's name comes from PUREBOOT_WINDOWS_SHARE. The [global] section needs "
        "'map to guest = Bad User' for guest access."
    )

    def add_arguments(self, parser):
        parser.add_argument("--share", default="", help="share name (default: from the setting)")
        parser.add_argument("--output", "-o", default="", help="write here instead of printing")

    def handle(self, *args, share: str, output: str, **options):
        root = Path(settings.PUREBOOT_BOOT_ROOT).resolve()
        try:
            owner = pwd.getpwuid(root.stat().st_uid).pw_name
        except FileNotFoundError:
            raise CommandError(f"{root} does not exist: import a boot image first") from None
        except KeyError:
            raise CommandError(f"{root} is owned by a user id with no name") from None
        text = render(share or share_name(), root, owner)
        if not output:
            self.stdout.write(text, ending="")
            return
        try:
            atomic_write(Path(output), text)
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc}") from None
        self.stderr.write(f"wrote {output}")
