"""The nfs-ganesha configuration of NFS roots: rendering, checking, writing, reloading.

One EXPORT per root file system template and one per node overlay, from
``templates/nfsroot/ganesha.conf.j2``. Pure functions of their arguments
(``render_ganesha_config(exports, port=...)``), so a test harness renders the
same text for its own paths and addresses; ``bootserve.nfsroot`` builds the
exports from the database and keeps the file in step with the lifecycle.

Why the config looks as it does:

- NFSv4 over TCP only (``Protocols = 4``): one port and no rpcbind, mountd or
  lock manager for a Raspberry Pi's initramfs to reach; FSAL VFS, since the
  trees are plain folders on the controller.
- ``Squash = No_Root_Squash`` everywhere. A diskless root is a whole system
  whose root must read root-only files of its template (``/etc/shadow``,
  sudoers, SSH host keys) and own, chown and write the files of its overlay
  (``/var/log``, dpkg state, ``/etc``); with root squashed to nobody it does not
  boot. What bounds the risk is who may mount: templates are read-only (to
  every client, or to PUREBOOT_NFS_CLIENTS), and a node's overlay is
  read-write to that node's own leased IPv4 addresses only.
- A node overlay whose addresses are unknown (no lease file, or no lease for
  its MACs: proxy DHCP, a Pi known only by its serial) is exported to
  PUREBOOT_NFS_CLIENTS when that is set, else to no one, with a comment
  saying why; the next sync that sees its lease opens it.
- Export ids are stable, derived from the row ids (TEMPLATE_ID_BASE + the
  template's id, NODE_ID_BASE + the node's id; ``Export_Id`` is 16 bits), so
  a reload keeps the exports that did not change and clients keep their
  file handles.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from pureboot.files import atomic_write

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "nfsroot"
TEMPLATE_ID_BASE = 1000
NODE_ID_BASE = 10000
MAX_EXPORT_ID = 65535
TEMPLATE_PSEUDO = "/pureboot/templates/"
NODE_PSEUDO = "/pureboot/nodes/"
NFS_PORT = 2049
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+-]*")


class GaneshaConfigError(ValueError):
    """An export cannot be written into a ganesha config; the message names it."""


class GaneshaReloadError(RuntimeError):
    """ganesha could not be told to re-read its exports (no pid file, not running, not ours)."""


@dataclass(frozen=True)
class Export:
    """One EXPORT block.

    ``clients`` empty means every client, unless ``closed_reason`` is set:
    then no client may mount it, and the config says why.
    """

    export_id: int
    path: str
    pseudo: str
    access: str  # RO or RW
    clients: tuple[str, ...] = ()
    closed_reason: str = ""
    comment: str = ""


def template_export(template_id: int, name: str, path: str | Path, clients=()) -> Export:
    """The read-only export of template ``name`` (``/pureboot/templates/<name>``)."""
    return Export(
        export_id=TEMPLATE_ID_BASE + template_id,
        path=str(path),
        pseudo=f"{TEMPLATE_PSEUDO}{name}",
        access="RO",
        clients=tuple(clients),
        comment=f"root file system {name} (read-only template)",
    )


def node_export(node_id: int, path: str | Path, clients=(), closed_reason: str = "") -> Export:
    """The read-write overlay export of node ``node_id`` (``/pureboot/nodes/<id>``)."""
    return Export(
        export_id=NODE_ID_BASE + node_id,
        path=str(path),
        pseudo=f"{NODE_PSEUDO}{node_id}",
        access="RW",
        clients=tuple(clients),
        closed_reason="" if clients else closed_reason,
        comment=f"node {node_id}: its writable overlay",
    )


def validate(exports: Iterable[Export]) -> None:
    """Raise GaneshaConfigError for an export the config could not say safely or uniquely."""
    ids: set[int] = set()
    pseudos: set[str] = set()
    for export in exports:
        if not 1 <= export.export_id <= MAX_EXPORT_ID:
            raise GaneshaConfigError(
                f"{export.comment}: export id {export.export_id} is outside 1-{MAX_EXPORT_ID} "
                f"(templates count from {TEMPLATE_ID_BASE}, nodes from {NODE_ID_BASE})"
            )
        if export.export_id in ids or export.pseudo in pseudos:
            raise GaneshaConfigError(f"{export.comment}: export id or pseudo path used twice")
        ids.add(export.export_id)
        pseudos.add(export.pseudo)
        for path in (export.path, export.pseudo):
            if not _SAFE_PATH.fullmatch(path) or "/../" in f"{path}/":
                raise GaneshaConfigError(
                    f"{export.comment}: {path!r} is not a plain absolute path (letters, digits "
                    "and . _ / + - only)"
                )
        if export.access not in ("RO", "RW"):
            raise GaneshaConfigError(f"{export.comment}: access {export.access!r}")
        for client in export.clients:
            try:
                ipaddress.IPv4Network(client, strict=False)
            except ValueError:
                raise GaneshaConfigError(
                    f"{export.comment}: client {client!r} is not an IPv4 address or network"
                ) from None
        if re.search(r"[\x00-\x1f]", export.comment + export.closed_reason):
            raise GaneshaConfigError("a comment holds a control character")


@lru_cache(maxsize=1)
def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_ganesha_config(
    exports: Iterable[Export],
    *,
    port: int = NFS_PORT,
    bind_address: str = "",
    graceless: bool = False,
    recovery_root: str | Path | None = None,
) -> str:
    """The whole ganesha.conf for ``exports``. Pure: no database, no file read.

    ``graceless`` skips the NFSv4 grace period after a start (a test's fresh
    server; a real one keeps it, so clients reclaim their state after a
    restart); ``recovery_root`` is where ganesha keeps that client state
    (default: its own, /var/lib/nfs/ganesha).
    """
    exports = sorted(exports, key=lambda e: e.export_id)
    validate(exports)
    if bind_address:
        ipaddress.IPv4Address(bind_address)
    recovery = str(recovery_root) if recovery_root else ""
    if recovery and not _SAFE_PATH.fullmatch(recovery):
        raise GaneshaConfigError(f"recovery root {recovery!r} is not a plain absolute path")
    return (
        _environment()
        .get_template("ganesha.conf.j2")
        .render(
            exports=exports,
            port=int(port),
            bind_address=bind_address,
            graceless=graceless,
            recovery_root=recovery,
        )
    )


def problems(exports: Iterable[Export]) -> list[str]:
    """What is wrong with ``exports`` on this machine (for ``nfs_config --check``)."""
    found = []
    for export in exports:
        if not os.path.isdir(export.path) or os.path.islink(export.path):
            found.append(f"{export.comment}: {export.path} is not a folder")
        if export.closed_reason:
            found.append(f"{export.comment}: exported to no one ({export.closed_reason})")
    return found


def write_config(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless it already says that; True if written."""
    try:
        if path.read_text() == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    atomic_write(path, text)
    return True


def reload(pidfile: str | Path) -> int:
    """SIGHUP the ganesha whose pid ``pidfile`` holds: it re-reads its exports. Returns the pid.

    Raises GaneshaReloadError when the file is missing or unreadable, or the
    process is gone, is not ganesha.nfsd (a pid reused by another program
    is never signalled), or is not ours to signal.
    """
    try:
        pid = int(Path(pidfile).read_text().strip())
    except (OSError, ValueError) as exc:
        raise GaneshaReloadError(f"cannot read ganesha's pid from {pidfile}: {exc}") from None
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        raise GaneshaReloadError(f"ganesha (pid {pid} in {pidfile}) is not running") from None
    if not name.startswith("ganesha.nfsd"):
        raise GaneshaReloadError(f"pid {pid} in {pidfile} is {name!r}, not ganesha.nfsd")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise GaneshaReloadError(f"ganesha (pid {pid}) exited") from None
    except PermissionError:
        raise GaneshaReloadError(
            f"not allowed to signal ganesha (pid {pid}): run PureBoot's worker as the user "
            "ganesha runs as (root), or reload it by hand: kill -HUP " + str(pid)
        ) from None
    return pid
