"""Root file system templates for diskless nodes: import from a tar archive, remove.

A template is unpacked into ``<PUREBOOT_NFSROOT_DIR>/templates/<name>/``,
which nfs-ganesha exports read-only (``bootserve.ganesha``). The archive is
unpacked by ``rootfs_archive``, which refuses hostile archives whole; PureBoot
never follows a link inside a template on the controller (kernel detection
and the overlay seed look at links, never through them).

The tree is unpacked into a hidden folder beside its final place and
renamed into place with the row and its audit event, together with its
kernel and initramfs copied into ``<boot root>/nfsroot/<name>/`` (a
Raspberry Pi fetches them over TFTP); a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.db import transaction

from audit import services as audit
from nodes.choices import NodeState
from nodes.models import Node

from .definitions import Definition, DefinitionError
from .models import RootFilesystem
from .rootfs_archive import RootfsError, member_parts, unpack

ARCHES = ("aarch64", "armhf", "x86_64")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
# A kernel's or initramfs's path components: they end up unquoted in iPXE
# scripts and in X-Accel-Redirect headers.
_BOOT_NAME_RE = re.compile(r"^[A-Za-z0-9._+-]+$")
# Raspberry Pi firmware kernels and the initramfs names its config.txt loads.
PI_BOOT_FILES = {
    "aarch64": (("kernel8.img", "initramfs8"), ("kernel_2712.img", "initramfs_2712")),
    "armhf": (("kernel7l.img", "initramfs7l"), ("kernel7.img", "initramfs7")),
    "x86_64": (),
}


class RootfsExists(RootfsError):
    """A template of that name exists and replacing it was not asked for."""


class RootfsInUse(RootfsError):
    """Live nodes boot this template: it is neither removed nor replaced under them."""

    def __init__(self, name: str, node_ids: list[int], doing: str) -> None:
        shown = ", ".join(str(n) for n in node_ids[:20])
        more = f" and {len(node_ids) - 20} more" if len(node_ids) > 20 else ""
        super().__init__(
            f"root file system {name!r} is booted by nodes {shown}{more}: it cannot be {doing} "
            "under them (retire or reprovision them first; to roll out a new system, import it "
            "under a new name and save a workflow version that names it)"
        )
        self.node_ids = node_ids


# --- where things live --------------------------------------------------------------


def nfsroot_dir() -> Path:
    return Path(settings.PUREBOOT_NFSROOT_DIR)


def templates_dir() -> Path:
    return nfsroot_dir() / "templates"


def template_path(name: str) -> Path:
    return templates_dir() / name


def boot_files_dir(name: str | None = None) -> Path:
    """``<boot root>/nfsroot[/<name>]``: a template's kernel and initramfs."""
    base = Path(settings.PUREBOOT_BOOT_ROOT) / "nfsroot"
    return base / name if name else base


# --- who uses a template --------------------------------------------------------------


def nfs_root_task(definition: dict) -> dict | None:
    """The ``nfs_root`` task of a workflow definition, if it has one."""
    return next((t for t in definition.get("tasks", []) if t.get("type") == "nfs_root"), None)


def nodes_using(name: str) -> list[int]:
    """Nodes not retired whose pinned workflow version boots template ``name``."""
    pinned = (
        Node.objects.exclude(state=NodeState.RETIRED)
        .filter(workflow_version__isnull=False)
        .values_list("pk", "workflow_version__definition")
    )
    return sorted(
        pk
        for pk, definition in pinned
        if (nfs_root_task(definition or {}) or {}).get("root") == name
    )


# --- kernel and initramfs ----------------------------------------------------------


def regular_file(root: Path, relative: str) -> bool:
    """Whether ``relative`` is a regular file under ``root`` reached through folders only."""
    parts = member_parts(relative) if relative else ()
    if not parts:
        return False
    here = root
    for index, part in enumerate(parts):
        here = here / part
        try:
            mode = os.lstat(here).st_mode
        except FileNotFoundError:
            return False
        last = index == len(parts) - 1
        if (last and not stat.S_ISREG(mode)) or (not last and not stat.S_ISDIR(mode)):
            return False
    return True


def _version_key(text: str) -> tuple:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", text))


def find_boot_files(
    root: Path, arch: str, kernel: str | None = None, initrd: str | None = None
) -> tuple[str, str]:
    """The kernel and initramfs inside the template, as paths relative to its root.

    Given paths must be regular files (not links); otherwise the Raspberry Pi
    names (``boot/firmware/kernel8.img`` and ``initramfs8``, or under
    ``boot/``) and then the newest ``boot/vmlinuz-<version>`` with its
    ``boot/initrd.img-<version>`` are looked for.
    """
    if kernel or initrd:
        if not (kernel and initrd):
            raise RootfsError("--kernel and --initrd go together")
        for option, relative in (("--kernel", kernel), ("--initrd", initrd)):
            _check_boot_path(option, relative.lstrip("/"))
            if not regular_file(root, relative.lstrip("/")):
                raise RootfsError(f"{option} {relative}: no such regular file in the archive")
        kernel, initrd = kernel.lstrip("/"), initrd.lstrip("/")
        if kernel.rsplit("/", 1)[-1] == initrd.rsplit("/", 1)[-1]:
            raise RootfsError("the kernel and the initramfs need different file names")
        return kernel, initrd
    for folder in ("boot/firmware", "boot"):
        for kernel_name, initrd_name in PI_BOOT_FILES.get(arch, ()):
            pair = (f"{folder}/{kernel_name}", f"{folder}/{initrd_name}")
            if regular_file(root, pair[0]) and regular_file(root, pair[1]):
                return pair
    kernels = []
    if _real_dir(root, "/boot"):
        kernels = [p.name for p in (root / "boot").iterdir() if p.name.startswith("vmlinuz-")]
    for name in sorted(kernels, key=_version_key, reverse=True):
        version = name.removeprefix("vmlinuz-")
        for candidate in (f"boot/initrd.img-{version}", f"boot/initramfs-{version}.img"):
            if regular_file(root, f"boot/{name}") and regular_file(root, candidate):
                _check_boot_path("the kernel", f"boot/{name}")
                _check_boot_path("its initramfs", candidate)
                return f"boot/{name}", candidate
    raise RootfsError(
        "no kernel with an initramfs found (looked for boot/firmware/ and boot/ "
        f"{', '.join(k for k, _ in PI_BOOT_FILES.get(arch, ())) or 'kernel8.img'} with its "
        "initramfs, and boot/vmlinuz-<version> with boot/initrd.img-<version>); name them "
        "with --kernel and --initrd. The initramfs must carry PureBoot's NFS root script "
        "(templates/nfsroot/README.md)"
    )


def _check_boot_path(what: str, relative: str) -> None:
    """RootfsError unless every component of ``relative`` is a plain file name."""
    parts = relative.split("/")
    if all(_BOOT_NAME_RE.match(p) and p not in (".", "..") for p in parts):
        return
    raise RootfsError(
        f"{what} {relative!r}: a kernel's or initramfs's path may hold only letters, digits, "
        "'.', '_', '+' and '-' between its '/' (no '..'): rename it in the archive, or name "
        "another with --kernel and --initrd"
    )


def overlay_problems(name: str, paths: Iterable[str]) -> list[str]:
    """Overlay paths that are not real folders in template ``name`` (they cannot be bound)."""
    root = template_path(name)
    return [
        f"{path} is not a folder in root file system {name!r}"
        for path in paths
        if not _real_dir(root, path)
    ]


def check_task(definition: Definition, task: dict, index: int) -> None:
    """Save-time check of an nfs_root task: NFS root is on, its template is there and fits.

    Raises DefinitionError naming the setting, the command or the mismatch.
    """
    if not settings.PUREBOOT_NFS_SERVER:
        raise DefinitionError(
            "NFS root is off: set PUREBOOT_NFS_SERVER to the IPv4 address nodes mount their "
            "root file system from",
            path=f"tasks[{index}].type",
        )
    name = task["root"]
    template = RootFilesystem.objects.filter(name=name).first()
    if template is None:
        raise DefinitionError(
            f"no root file system {name!r} is imported: import it first (manage.py "
            f"import_rootfs {name} ARCHIVE --arch ARCH)",
            path=f"tasks[{index}].root",
        )
    # Every arch the workflow admits must run it: an armhf node cannot run aarch64 binaries.
    if set(definition.arch) != {template.arch}:
        raise DefinitionError(
            f"root file system {template} is for {template.arch}; this workflow is for "
            f"{', '.join(definition.arch)}: set its arch to [{template.arch}]",
            path=f"tasks[{index}].root",
        )
    problems = overlay_problems(name, task["overlay"])
    if problems:
        raise DefinitionError("; ".join(problems[:3]), path=f"tasks[{index}].overlay")


def _real_dir(root: Path, path: str) -> bool:
    here = root
    for part in member_parts(path.lstrip("/")):
        here = here / part
        try:
            if not stat.S_ISDIR(os.lstat(here).st_mode):
                return False
        except FileNotFoundError:
            return False
    return True


# --- import and removal -------------------------------------------------------------


def import_rootfs(
    name: str,
    archive: Path,
    arch: str,
    *,
    kernel: str | None = None,
    initrd: str | None = None,
    replace: bool = False,
    actor: str = "system",
) -> RootFilesystem:
    """Unpack ``archive`` as template ``name``: its tree, boot files, row and audit event.

    Raises RootfsError (RootfsExists, RootfsInUse) with nothing left behind.
    """
    if not _NAME_RE.match(name):
        raise RootfsError(f"{name!r}: use 1-100 lower-case letters, digits, '-' or '_'")
    if arch not in ARCHES:
        raise RootfsError(f"--arch must be one of {', '.join(ARCHES)}")
    if not archive.is_file():
        raise RootfsError(f"{archive}: no such file")
    existing = RootFilesystem.objects.filter(name=name).first()
    if existing and not replace:
        raise RootfsExists(f"root file system {name!r} exists; --replace replaces it")
    if existing and (users := nodes_using(name)):
        raise RootfsInUse(name, users, "replaced")
    if archive.stat().st_size > settings.PUREBOOT_MAX_IMAGE_BYTES:
        raise RootfsError(
            f"{archive} is larger than PUREBOOT_MAX_IMAGE_BYTES "
            f"({settings.PUREBOOT_MAX_IMAGE_BYTES} bytes)"
        )
    templates_dir().mkdir(parents=True, exist_ok=True)
    boot_files_dir().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=templates_dir(), prefix=f".import-{name}-"))
    boot_work = Path(tempfile.mkdtemp(dir=boot_files_dir(), prefix=f".import-{name}-"))
    try:
        tree = work / "root"
        tree.mkdir(mode=0o755)
        size, files, digest = unpack(archive, tree)  # hashed as it is unpacked
        kernel, initrd = find_boot_files(tree, arch, kernel, initrd)
        boot_work.chmod(0o755)
        for relative in (kernel, initrd):
            shutil.copyfile(tree / relative, boot_work / relative.rsplit("/", 1)[-1])
            (boot_work / relative.rsplit("/", 1)[-1]).chmod(0o644)
        fields = {
            "arch": arch,
            "size": size,
            "files": files,
            "sha256": digest,
            "source": str(archive)[:1000],
            "kernel": kernel,
            "initrd": initrd,
            "author_name": actor,
        }
        return _swap_in(name, existing, fields, tree, boot_work, actor)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(boot_work, ignore_errors=True)


def _swap_in(
    name: str,
    existing: RootFilesystem | None,
    fields: dict,
    tree: Path,
    boot_work: Path,
    actor: str,
) -> RootFilesystem:
    """The row, the audit event and both folders, together or not at all."""
    moves = ((tree, template_path(name)), (boot_work, boot_files_dir(name)))
    done: list[tuple[Path, Path, Path | None]] = []  # (staged, final, old)
    try:
        with transaction.atomic():
            # The unpack took minutes: whether the template may be (re)placed
            # is decided again here, on a locked row, with nothing moved yet.
            current = RootFilesystem.objects.select_for_update().filter(name=name).first()
            if (current.pk if current else None) != (existing.pk if existing else None):
                raise RootfsError(
                    f"root file system {name!r} was imported or removed by someone else "
                    "while this archive was unpacked: run the command again"
                )
            if existing and (users := nodes_using(name)):
                raise RootfsInUse(name, users, "replaced")
            if existing:
                for key, value in fields.items():
                    setattr(existing, key, value)
                existing.save()
                rootfs = existing
            else:
                rootfs = RootFilesystem.objects.create(name=name, **fields)
            audit.record(
                actor=actor,
                action="rootfs.replace" if existing else "rootfs.import",
                object_type="workflows.rootfilesystem",
                object_id=rootfs.pk,
                details={
                    "name": name,
                    "arch": fields["arch"],
                    "sha256": fields["sha256"],
                    "files": fields["files"],
                    "kernel": fields["kernel"],
                    "initrd": fields["initrd"],
                },
            )
            for staged, final in moves:  # the folders last, still inside the transaction
                old = None
                if final.exists() or final.is_symlink():
                    old = final.with_name(f".old-{name}-{os.getpid()}")
                    final.rename(old)
                done.append((staged, final, old))
                staged.rename(final)
    except Exception:
        for staged, final, old in reversed(done):  # the row was rolled back too
            if final.exists() and not staged.exists():
                final.rename(staged)
            if old is not None:
                old.rename(final)
        raise
    for _staged, _final, old in done:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return rootfs


def remove_rootfs(name: str, actor: str = "system") -> None:
    """Delete template ``name``: its row (audited), its tree and its boot files.

    Raises RootfsError when there is none, RootfsInUse when live nodes boot it.
    """
    with transaction.atomic():
        rootfs = RootFilesystem.objects.select_for_update().filter(name=name).first()
        if rootfs is None:
            raise RootfsError(f"no root file system {name!r}")
        users = nodes_using(name)
        if users:
            raise RootfsInUse(name, users, "removed")
        audit.record(
            actor=actor,
            action="rootfs.remove",
            object_type="workflows.rootfilesystem",
            object_id=rootfs.pk,
            details={"name": name, "sha256": rootfs.sha256},
        )
        rootfs.delete()
    for path in (template_path(name), boot_files_dir(name)):
        if path.exists():
            trash = path.with_name(f".remove-{name}-{os.getpid()}")
            path.rename(trash)  # gone from its place at once, however long deleting takes
            shutil.rmtree(trash, ignore_errors=True)
