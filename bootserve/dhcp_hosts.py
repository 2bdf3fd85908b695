"""The DHCP hosts directory (Rule E): one dnsmasq host file per node, kept in step
with the lifecycle.

Machines in states that need the network to boot are answered; the others
get ``ignore`` lines (never a deleted file: dnsmasq does not notice deletions
until SIGHUP). ``sync_host`` runs on every committed transition (queued by
``nodes.services``), ``rebuild_hostsdir`` rewrites the whole directory.
The configuration itself is in ``bootserve.dhcp``.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from nodes.models import NetworkInterface, Node

from .dhcp import ANSWERED_STATES, IGNORE_TAG, LOCK_FILE, REMOVED_FILE, DhcpConfigError, _setting
from .metrics import DHCP_FILES_WRITTEN, DHCP_SYNCS


def answered(state: str) -> bool:
    """Whether dnsmasq answers a machine in ``state``."""
    return state in ANSWERED_STATES


def configured_mode() -> str:
    """PUREBOOT_DHCP_MODE: the mode the host entries are written for."""
    return _setting("PUREBOOT_DHCP_MODE", "proxy")


def host_line(mac: str, answer: bool, mode: str | None = None) -> str:
    """One dhcp-host line: a known MAC that is answered, or one that is ignored."""
    if answer:
        return mac
    if (mode or configured_mode()) == "proxy":
        return f"{mac},set:{IGNORE_TAG},ignore"
    return f"{mac},ignore"


def host_entry(node: Node, mode: str | None = None) -> str | None:
    """The hosts-dir file for ``node``: one line per MAC, or None without MACs."""
    macs = sorted(i.mac for i in node.interfaces.all())
    if not macs:
        return None
    answer = answered(node.state)
    return "".join(host_line(mac, answer, mode) + "\n" for mac in macs)


def configured_hostsdir() -> Path | None:
    """PUREBOOT_DHCP_HOSTSDIR, or None when DHCP sync is off."""
    raw = _setting("PUREBOOT_DHCP_HOSTSDIR", "")
    return Path(raw) if raw else None


def sync_host(node_id: int, hostsdir: str | Path | None = None) -> Path | None:
    """Write ``<hostsdir>/<node_id>`` from the database; returns the path, or None if off.

    MACs the file named before that belong to no node any more are moved to
    the ``removed`` file as ignore lines (dnsmasq would otherwise go on
    answering them until a SIGHUP).
    """
    directory = Path(hostsdir) if hostsdir else configured_hostsdir()
    if directory is None:
        return None
    with _locked(directory):
        path = directory / str(node_id)
        previous = _read_macs(path)
        node = Node.objects.filter(pk=node_id).prefetch_related("interfaces").first()
        content = host_entry(node) if node else None
        current = set(_macs_of(content))
        gone = previous - current
        owned = set(NetworkInterface.objects.filter(mac__in=gone).values_list("mac", flat=True))
        # The node's own file first: a MAC that comes back from `removed` is
        # answered by this newer record; then `removed`, whose ignore records
        # are newer than this file's old lines.
        if content:
            _write_if_changed(path, content)
        _update_removed(directory, add=gone - owned, drop=current)
        if not content and path.exists():
            path.unlink()  # its MACs are ignored by newer records in `removed`
    DHCP_SYNCS.labels("node").inc()
    return path


def rebuild_hostsdir(hostsdir: str | Path | None = None) -> dict[str, int]:
    """Rewrite every node's file from the database; returns counts for the operator.

    Files of nodes that no longer exist, and MACs a node no longer has, end as
    ignore lines in ``removed``. Unchanged files are not rewritten.
    """
    directory = Path(hostsdir) if hostsdir else configured_hostsdir()
    if directory is None:
        raise DhcpConfigError("PUREBOOT_DHCP_HOSTSDIR is not set and no hosts dir was given")
    counts = {"answered": 0, "ignored": 0, "written": 0, "removed": 0}
    mode = configured_mode()
    with _locked(directory):
        by_node: dict[int, list[str]] = {}
        states: dict[int, str] = {}
        for mac, node_id, state in NetworkInterface.objects.values_list(
            "mac", "node_id", "node__state"
        ):
            by_node.setdefault(node_id, []).append(mac)
            states[node_id] = state
        owned = {mac for macs in by_node.values() for mac in macs}
        stale: set[str] = set()
        for path in _node_files(directory):
            node_id = int(path.name)
            stale |= _read_macs(path) - set(by_node.get(node_id, ()))
        # A MAC that moved to another node may still be named by its old
        # node's file; its new owner's record must be the newest one.
        contested = stale & owned
        for node_id, macs in by_node.items():
            answer = answered(states[node_id])
            counts["answered" if answer else "ignored"] += len(macs)
            content = "".join(host_line(m, answer, mode) + "\n" for m in sorted(macs))
            path = directory / str(node_id)
            if contested.intersection(macs):
                _write_atomic(path, content)
                counts["written"] += 1
            elif _write_if_changed(path, content):
                counts["written"] += 1
        removed = _update_removed(directory, add=stale - owned, drop=owned, mode=mode)
        counts["removed"] = len(removed)
        for path in _node_files(directory):
            if int(path.name) not in by_node:
                path.unlink()
    DHCP_SYNCS.labels("rebuild").inc()
    return counts


def _macs_of(content: str | None) -> Iterator[str]:
    for line in (content or "").splitlines():
        mac = line.split(",", 1)[0].strip().lower()
        if mac and not mac.startswith("#"):
            yield mac


def _read_macs(path: Path) -> set[str]:
    try:
        return set(_macs_of(path.read_text()))
    except FileNotFoundError:
        return set()


def _node_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.isdigit() and p.is_file()]


def _update_removed(
    directory: Path, *, add: Iterable[str], drop: Iterable[str], mode: str | None = None
) -> set[str]:
    path = directory / REMOVED_FILE
    before = _read_macs(path)
    after = (before | set(add)) - set(drop)
    content = "".join(host_line(mac, False, mode) + "\n" for mac in sorted(after))
    if after or path.exists():
        _write_if_changed(path, content)
    return after


def _write_if_changed(path: Path, content: str) -> bool:
    try:
        if path.read_text() == content:
            return False
    except FileNotFoundError:
        pass
    _write_atomic(path, content)
    return True


def _write_atomic(path: Path, content: str) -> None:
    """Replace ``path`` in one step: dnsmasq reads the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        # dnsmasq drops root after starting: its user must read the entries.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    DHCP_FILES_WRITTEN.inc()


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One writer at a time (web process, workers, the command): read and write as one step.

    Without it a worker holding an older state could write after a newer one.
    """
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
