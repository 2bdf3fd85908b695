"""NFS roots of diskless nodes: their writable overlays, kernel command lines and exports.

A diskless node (its workflow's network boot is an ``nfs_root`` task) mounts
its template read-only as ``/`` and its own export read-write, from which it
binds the overlay folders (``/etc``, ``/var``, ``/home`` by default) over the
template's: NFS cannot be the upper layer of an overlayfs, so the node's
writable folders are whole copies, seeded from the template when the overlay
is made. The boot side is ``templates/nfsroot/pureboot-nfsroot.sh``, an
initramfs-tools boot script that reads the kernel arguments of
:func:`kernel_args`.

The overlay follows the lifecycle, decided from the node's state by
:func:`sync_node` (the Celery task ``bootserve.sync_nfs_root``, queued on the
commit of every transition, and ``manage.py nfs_sync``), so it is idempotent
and a lost or late task is repaired by the next:

- installing, installed, active: the overlay exists, made for the node's
  latest install run; a new run (a reprovision's install) gets a fresh copy;
- failed, migrating: left as it is, for an operator to look at;
- every other state (pending, reprovision, deprovisioning, retired, ...), a
  node gone, or a workflow without nfs_root: removed.

``<nfsroot>/nodes/<id>/`` is the overlay; ``<nfsroot>/nodes/.<id>.json`` says
it is complete and for which run, and only overlays with one are exported.
Making one: copy into a hidden folder, rename it into place, write the
record, then export it. Removing one: drop the record, unexport it (ganesha
re-reads its config on SIGHUP), then delete the folder. A fresh copy for a
new run is a removal and a making: ganesha holds an export's folder by its
file handle, so the same path must be withdrawn and exported again. Every sync holds a
lock, so two workers never write the config from different pictures.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from nodes.choices import NodeState
from nodes.models import Node
from workflows import rootfs
from workflows import services as workflow_services
from workflows.choices import RunStatus
from workflows.models import RootFilesystem, WorkflowRun

from . import ganesha, leases

log = logging.getLogger(__name__)

# States whose node boots its NFS root and so needs its overlay.
OVERLAY_STATES = (NodeState.INSTALLING, NodeState.INSTALLED, NodeState.ACTIVE)
# States whose overlay is left as it is: an operator decides what comes next.
HELD_STATES = (NodeState.FAILED, NodeState.MIGRATING)
# After a reload that withdraws an export, before the one that exports the same
# path again: two SIGHUPs close together may be read as one, which would see
# the export unchanged and keep the old folder's handle (NFS4ERR_STALE).
RELOAD_SETTLE_SECONDS = 1.0


class NfsRootError(RuntimeError):
    """An overlay cannot be made (its template is gone); the message says what to do."""


@dataclass(frozen=True)
class Overlay:
    """What a node's overlay is made from and for."""

    node: int
    run: int
    root: str
    paths: tuple[str, ...]


HOLD = object()  # wanted(): leave the overlay as it is


# --- kernel command line ---------------------------------------------------------------


def kernel_args(
    *,
    server: str,
    template_export: str,
    node_export: str,
    overlay_paths: Sequence[str],
    base_url: str = "",
    node_id: int | None = None,
    token: str = "",
    port: int = ganesha.NFS_PORT,
) -> list[str]:
    """The kernel arguments that boot an NFS root with a writable overlay. Pure.

    ``root=/dev/nfs nfsroot=<server>:<export>,<options>`` is the kernel's own
    syntax (Documentation/admin-guide/nfs/nfsroot.rst); ``boot=pureboot``
    makes initramfs-tools run PureBoot's boot script instead of its own NFS
    one, whose klibc nfsmount speaks NFSv3 only. The ``pureboot.*`` arguments
    are that script's: the overlay export, the folders bound from it, and the
    controller, node and token for the first-boot report (no token: no report).
    """
    options = "vers=4.1,ro" + (f",port={port}" if port != ganesha.NFS_PORT else "")
    args = [
        "root=/dev/nfs",
        f"nfsroot={server}:{template_export},{options}",
        "ip=dhcp",
        "boot=pureboot",
        f"pureboot.overlay={server}:{node_export}",
        "pureboot.overlay_paths=" + ",".join(overlay_paths),
    ]
    if base_url:
        args.append(f"pureboot.url={base_url}")
    if node_id is not None:
        args.append(f"pureboot.node={node_id}")
    if token:
        args.append(f"pureboot.token={token}")
    return args


def node_boot(node: Node, task: dict, *, token: str, base_url: str) -> tuple[str, str, str] | None:
    """(kernel file, initramfs file, command line) of ``node``'s NFS root, or None.

    The files are paths under the boot root (``import_rootfs`` copied them
    there). None when NFS root is off (PUREBOOT_NFS_SERVER) or the template
    is gone: the boot path then has no install boot to give.
    """
    server = settings.PUREBOOT_NFS_SERVER
    template = RootFilesystem.objects.filter(name=task["root"]).first()
    if not server or template is None:
        return None
    args = kernel_args(
        server=server,
        template_export=f"{ganesha.TEMPLATE_PSEUDO}{template.name}",
        node_export=f"{ganesha.NODE_PSEUDO}{node.pk}",
        overlay_paths=task["overlay"],
        base_url=base_url,
        node_id=node.pk,
        token=token,
        port=settings.PUREBOOT_NFS_PORT,
    )
    return template.kernel_file, template.initrd_file, " ".join(args)


def first_boot_token(node: Node) -> str:
    """The token an installed (not yet active) diskless node reports its first boot with.

    Tokens end with the install: an active node boots with none (and reports
    nothing); an installed one still may say ``active``
    (``workflows.services.resolve_token``).
    """
    if node.state != NodeState.INSTALLED:
        return ""
    run = (
        WorkflowRun.objects.filter(node=node, status=RunStatus.SUCCEEDED)
        .order_by("-finished_at", "-id")
        .first()
    )
    return workflow_services.issue_token(run) if run else ""


# --- where overlays live ------------------------------------------------------------


def nodes_dir() -> Path:
    return rootfs.nfsroot_dir() / "nodes"


def overlay_path(node_id: int) -> Path:
    return nodes_dir() / str(node_id)


def _record_path(node_id: int) -> Path:
    return nodes_dir() / f".{node_id}.json"


def read_record(node_id: int) -> dict | None:
    try:
        return json.loads(_record_path(node_id).read_text())
    except (FileNotFoundError, ValueError):
        return None


def overlay_ids() -> list[int]:
    """Nodes with a complete overlay (its record written)."""
    if not nodes_dir().is_dir():
        return []
    found = []
    for entry in nodes_dir().iterdir():
        name = entry.name
        if name.startswith(".") and name.endswith(".json") and name[1:-5].isdigit():
            found.append(int(name[1:-5]))
    return sorted(found)


@contextmanager
def _locked() -> Iterator[None]:
    nodes_dir().mkdir(parents=True, exist_ok=True)
    with open(rootfs.nfsroot_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --- what a node should have ------------------------------------------------------------


def wanted(node: Node | None) -> Overlay | object | None:
    """The overlay ``node`` should have now, HOLD to leave it, or None for none."""
    if node is None or node.workflow_version is None:
        return None
    task = rootfs.nfs_root_task(node.workflow_version.definition)
    if task is None:
        return None
    if node.state in HELD_STATES:
        return HOLD
    if node.state not in OVERLAY_STATES:
        return None
    run = WorkflowRun.objects.filter(node=node).order_by("-started_at", "-id").first()
    return Overlay(node.pk, run.pk if run else 0, task["root"], tuple(task["overlay"]))


def create_overlay(overlay: Overlay) -> None:
    """Seed ``nodes/<id>/`` with copies of the template's overlay folders, then record it.

    ``cp -a`` keeps owners, modes, links (never followed), hard links and
    extended attributes; the copy is the node's own, so its writes never
    reach the template.
    """
    template = rootfs.template_path(overlay.root)
    if not template.is_dir():
        raise NfsRootError(
            f"node {overlay.node}: root file system {overlay.root!r} is not imported "
            f"(manage.py import_rootfs {overlay.root} ARCHIVE --arch ARCH)"
        )
    staging = Path(tempfile.mkdtemp(dir=nodes_dir(), prefix=f".seed-{overlay.node}-"))
    try:
        staging.chmod(0o755)
        for path in overlay.paths:
            source = template / path.lstrip("/")
            target = staging / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if rootfs.overlay_problems(overlay.root, [path]):
                log.warning("nfsroot: node %s: %s is no folder in %s", overlay.node, path, template)
                target.mkdir(mode=0o755)
                continue
            subprocess.run(
                ["cp", "-a", "--reflink=auto", "--", str(source), str(target)],
                check=True,
                capture_output=True,
                timeout=3600,
            )
        _discard(overlay_path(overlay.node))
        staging.rename(overlay_path(overlay.node))
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise NfsRootError(f"node {overlay.node}: seeding failed: {exc.stderr[-300:]!r}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    record = {**asdict(overlay), "created_at": timezone.now().isoformat()}
    ganesha.write_config(_record_path(overlay.node), json.dumps(record) + "\n")
    log.info("nfsroot: node %s: overlay made from %s (run %s)", overlay.node, template, overlay.run)


def _discard(path: Path) -> None:
    """Move ``path`` out of its place at once, then delete it."""
    if not (path.exists() or path.is_symlink()):
        return
    trash = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".trash-{path.name}-"))
    path.rename(trash / "tree")
    shutil.rmtree(trash, ignore_errors=True)


# --- exports --------------------------------------------------------------------------


def overlay_clients(node: Node) -> tuple[tuple[str, ...], str]:
    """Who may mount ``node``'s overlay read-write: (clients, why closed when none).

    The addresses its MACs hold in the lease file, one lease per MAC: a MAC
    with two leases means another host asked with it (a spoofed MAC gets its
    own lease), and then nobody is let in until one expires. With no lease
    known (proxy DHCP, a Pi known by its serial only) the networks of
    PUREBOOT_NFS_CLIENTS, an operator's explicit choice, else nobody.
    """
    per_mac = [leases.ipv4_addresses_for([i.mac]) for i in node.interfaces.all()]
    if any(len(held) > 1 for held in per_mac):
        return (), "one of its MACs holds more than one DHCP lease; closed until one expires"
    addresses = tuple(sorted({str(a) for held in per_mac for a in held}))
    if addresses:
        return addresses, ""
    return tuple(settings.PUREBOOT_NFS_CLIENTS), (
        "no DHCP lease names its address yet and PUREBOOT_NFS_CLIENTS is empty"
    )


def exports(hide: Collection[str] = ()) -> list[ganesha.Export]:
    """Every export PureBoot serves now: imported templates (but ``hide``), complete overlays.

    Templates are read-only to the diskless nodes' own addresses and to
    PUREBOOT_NFS_CLIENTS, never to anyone: a template holds the files every
    node shares (its root's own, host keys if the operator left them in). An
    export whose id ganesha cannot hold (16 bits) is left out and logged, so
    one does not stop every other from being written.
    """
    node_exports = []
    node_addresses: set[str] = set()
    for node in Node.objects.filter(pk__in=overlay_ids()).prefetch_related("interfaces"):
        clients, closed = overlay_clients(node)
        node_exports.append(ganesha.node_export(node.pk, overlay_path(node.pk), clients, closed))
        node_addresses.update(clients)
    template_clients = tuple(sorted(node_addresses | set(settings.PUREBOOT_NFS_CLIENTS)))
    out = [
        replace(
            ganesha.template_export(t.pk, t.name, rootfs.template_path(t.name), template_clients),
            closed_reason=""
            if template_clients
            else "no diskless node holds a DHCP lease and PUREBOOT_NFS_CLIENTS is empty",
        )
        for t in RootFilesystem.objects.order_by("pk")
        if t.name not in hide and rootfs.template_path(t.name).is_dir()
    ]
    out += sorted(node_exports, key=lambda e: e.export_id)
    return [e for e in out if _id_fits(e)]


def _id_fits(export: ganesha.Export) -> bool:
    node = export.pseudo.startswith(ganesha.NODE_PSEUDO)
    limit = ganesha.MAX_EXPORT_ID if node else ganesha.NODE_ID_BASE - 1
    if export.export_id <= limit:
        return True
    log.error(
        "nfsroot: %s: export id %s is over %s; not exported",
        export.comment,
        export.export_id,
        limit,
    )
    return False


def render_config(hide: Collection[str] = ()) -> str:
    """The ganesha config for the exports of :func:`exports`, with this site's settings."""
    return ganesha.render_ganesha_config(exports(hide), port=settings.PUREBOOT_NFS_PORT)


def apply_exports(hide: Collection[str] = ()) -> bool:
    """Rewrite PUREBOOT_NFS_GANESHA_CONFIG if it changed, then SIGHUP ganesha. True if written.

    ``hide`` leaves those templates out. A ganesha that cannot be signalled
    is logged, not raised: the file is right, and the next reload (or start)
    reads it.
    """
    target = settings.PUREBOOT_NFS_GANESHA_CONFIG
    if not target:
        return False
    if not ganesha.write_config(Path(target), render_config(hide)):
        return False
    pidfile = settings.PUREBOOT_NFS_GANESHA_PIDFILE
    if pidfile:
        try:
            pid = ganesha.reload(pidfile)
            log.info("nfsroot: %s written; ganesha (pid %s) re-reads it", target, pid)
        except ganesha.GaneshaReloadError as exc:
            log.warning("nfsroot: %s written, but ganesha was not reloaded: %s", target, exc)
    return True


# --- keeping overlays in step with the lifecycle ------------------------------------------


def _sync(node_id: int) -> str:
    node = Node.objects.select_related("workflow_version").filter(pk=node_id).first()
    want = wanted(node)
    record = read_record(node_id)
    present = record is not None or overlay_path(node_id).exists()
    if want is HOLD:
        return "held"
    if isinstance(want, Overlay):
        if record is not None and record.get("run") == want.run and overlay_path(node_id).is_dir():
            return "unchanged"
        if present:  # another run's overlay: a fresh copy replaces it
            _unexport(node_id)
        create_overlay(want)
        return "created"
    if not present:
        return "unchanged"
    _unexport(node_id)
    _discard(overlay_path(node_id))
    log.info("nfsroot: node %s: overlay removed", node_id)
    return "removed"


def _unexport(node_id: int) -> None:
    _record_path(node_id).unlink(missing_ok=True)
    if apply_exports() and settings.PUREBOOT_NFS_GANESHA_PIDFILE:  # gone before its folder
        time.sleep(RELOAD_SETTLE_SECONDS)


def withdraw_template(name: str) -> None:
    """Unexport template ``name`` before its tree is replaced or removed.

    ganesha keeps an export's root by its file handle: a folder swapped
    under an export answers NFS4ERR_STALE, and a SIGHUP with the config
    unchanged does not look again. Withdrawn, then exported again by the
    next :func:`apply_exports`, the export finds the new tree.
    """
    if apply_exports(hide={name}) and settings.PUREBOOT_NFS_GANESHA_PIDFILE:
        time.sleep(RELOAD_SETTLE_SECONDS)


def sync_node(node_id: int) -> str:
    """Make, keep or remove ``node_id``'s overlay as its state says; refresh the exports.

    Returns created, removed, held or unchanged. Off (unchanged) while
    PUREBOOT_NFS_SERVER is empty.
    """
    if not settings.PUREBOOT_NFS_SERVER:
        return "unchanged"
    with _locked():
        outcome = _sync(node_id)
        apply_exports()  # also picks up a lease that changed a node's address
    return outcome


def sync_all() -> dict[str, int]:
    """Reconcile every node's overlay and the ganesha config (``manage.py nfs_sync``)."""
    counts = {"created": 0, "removed": 0, "held": 0, "unchanged": 0}
    with _locked():
        pinned = Node.objects.exclude(state=NodeState.RETIRED).filter(
            workflow_version__isnull=False
        )
        definitions = pinned.values_list("pk", "workflow_version__definition")
        ids = {pk for pk, d in definitions if rootfs.nfs_root_task(d or {})}
        ids |= set(overlay_ids())
        ids |= {int(p.name) for p in nodes_dir().iterdir() if p.name.isdigit()}
        for node_id in sorted(ids):
            counts[_sync(node_id)] += 1
        for leftover in nodes_dir().glob(".seed-*"):
            shutil.rmtree(leftover, ignore_errors=True)  # an interrupted copy
        for leftover in nodes_dir().glob(".trash-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        apply_exports()
    return counts
