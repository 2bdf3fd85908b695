"""A migration's temporary iSCSI LUN on the controller, made and removed with tgt.

tgt (``tgtd``, Debian's ``tgt`` package) is driven by its own admin tool,
``tgtadm`` (PUREBOOT_ISCSI_TGTADM). Each running migration gets one target
(``<prefix>:migration-<id>``, tid 10000 + id) with one LUN backed by a
sparse file of the source disk's size in PUREBOOT_ISCSI_DIR. Only the
machine whose turn it is may log in: the target's ACL holds exactly one
initiator address (the source's while it copies, then the target's while
it restores) and an incoming CHAP account whose secret is random, made for
this migration and kept encrypted. Making is idempotent (a retried step
makes the same target again) and removal too (``destroy`` after the
migration ended, whatever state tgtd is in).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from credentials import services as credentials
from nodes.models import Migration

log = logging.getLogger(__name__)

TID_BASE = 10000
LUN = 1
PORT = 3260


class IscsiError(Exception):
    """tgtd refused or cannot be reached; the message says which and why."""


def tid(migration: Migration) -> int:
    return TID_BASE + migration.pk


def iqn(migration: Migration) -> str:
    return f"{settings.PUREBOOT_ISCSI_IQN_PREFIX}:migration-{migration.pk}"


def chap_user(migration: Migration) -> str:
    return f"pureboot-migration-{migration.pk}"


def backing_file(migration: Migration) -> Path:
    return settings.PUREBOOT_ISCSI_DIR / f"migration-{migration.pk}.img"


def portal() -> str:
    """The address agents reach the controller's iSCSI portal at."""
    host = settings.PUREBOOT_ISCSI_PORTAL or urlsplit(settings.PUREBOOT_PUBLIC_URL).hostname
    if not host:
        raise IscsiError(
            "no iSCSI portal address: set PUREBOOT_ISCSI_PORTAL (or PUREBOOT_PUBLIC_URL) to "
            "the controller address the machines reach"
        )
    return host


def _tgtadm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [*shlex.split(settings.PUREBOOT_ISCSI_TGTADM), "--lld", "iscsi", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (FileNotFoundError, PermissionError):
        raise IscsiError(
            f"{command[0]} is not installed (apt-get install tgt) or PUREBOOT_ISCSI_TGTADM is wrong"
        ) from None
    except subprocess.TimeoutExpired:
        raise IscsiError("tgtadm did not answer in 30 s (is tgtd running?)") from None
    if check and done.returncode != 0:
        raise IscsiError(
            f"tgtadm {' '.join(args[:4])} failed: {(done.stderr or done.stdout).strip()[:300]}"
        )
    return done


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise IscsiError(f"{value!r} is not an initiator address") from None


def create(migration: Migration, size: int, initiator: str) -> dict:
    """Make the migration's target and LUN of ``size`` bytes, admitting only ``initiator``.

    Sets a new CHAP secret on ``migration`` (encrypted; the caller saves it)
    and returns what the agent needs besides that secret.
    """
    initiator = _address(initiator)
    directory = settings.PUREBOOT_ISCSI_DIR
    path = backing_file(migration)
    try:
        # A whole machine's disk lands here: only the controller's own user reads it.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
        free = shutil.disk_usage(directory).free + (path.stat().st_size if path.exists() else 0)
        if free < size:
            raise IscsiError(
                f"the controller has {free} bytes free in {directory}; the disk to copy is "
                f"{size} bytes (PUREBOOT_ISCSI_DIR)"
            )
        destroy(migration)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)  # sparse: blocks are used as the copy arrives
        finally:
            os.close(fd)
    except OSError as exc:
        raise IscsiError(f"cannot make the LUN file in {directory}: {exc.strerror}") from None
    secret = secrets.token_urlsafe(12)  # 16 characters: every initiator's CHAP limit
    number = str(tid(migration))
    _tgtadm("--op", "new", "--mode", "target", "--tid", number, "-T", iqn(migration))
    _tgtadm(
        "--op", "new", "--mode", "logicalunit", "--tid", number, "--lun", str(LUN),
        "-b", str(path),
    )  # fmt: skip
    _tgtadm(
        "--op", "new", "--mode", "account", "--user", chap_user(migration), "--password", secret
    )
    _tgtadm("--op", "bind", "--mode", "account", "--tid", number, "--user", chap_user(migration))
    _tgtadm("--op", "bind", "--mode", "target", "--tid", number, "-I", initiator)
    migration.chap_secret = credentials.encrypt(secret)
    log.info("migration %s: iSCSI target %s made for %s", migration.pk, iqn(migration), initiator)
    return {
        "portal": portal(),
        "port": PORT,
        "iqn": iqn(migration),
        "lun": LUN,
        "size": size,
        "admitted": initiator,
    }


def admit(migration: Migration, initiator: str) -> None:
    """Let ``initiator`` (and no other address) log in to the migration's target."""
    initiator = _address(initiator)
    number = str(tid(migration))
    current = migration.transfer.get("admitted")
    if current == initiator:
        return
    _tgtadm("--op", "bind", "--mode", "target", "--tid", number, "-I", initiator)
    if current:
        _tgtadm("--op", "unbind", "--mode", "target", "--tid", number, "-I", current, check=False)
    migration.transfer = {**migration.transfer, "admitted": initiator}


def chap(migration: Migration) -> dict[str, str]:
    """The CHAP account for the agent whose turn it is (never logged or stored in clear)."""
    return {"user": chap_user(migration), "secret": credentials.decrypt(migration.chap_secret)}


def destroy(migration: Migration) -> None:
    """Remove the target, its account and its file; whatever is already gone is fine."""
    number = str(tid(migration))
    _tgtadm("--op", "delete", "--force", "--mode", "target", "--tid", number, check=False)
    _tgtadm("--op", "delete", "--mode", "account", "--user", chap_user(migration), check=False)
    try:
        backing_file(migration).unlink(missing_ok=True)
    except OSError as exc:
        raise IscsiError(f"cannot remove {backing_file(migration)}: {exc.strerror}") from None


def exists(migration: Migration) -> bool:
    """Whether tgtd has the migration's target (for tests and the operator)."""
    shown = _tgtadm("--op", "show", "--mode", "target")
    return f": {iqn(migration)}\n" in shown.stdout + "\n"


def leftovers() -> list[int]:
    """Migration ids whose LUN file is still in PUREBOOT_ISCSI_DIR."""
    directory = settings.PUREBOOT_ISCSI_DIR
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob("migration-*.img"):
        number = path.name.removeprefix("migration-").removesuffix(".img")
        if number.isdigit():
            found.append(int(number))
    return sorted(found)
