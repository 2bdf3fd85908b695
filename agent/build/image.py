"""Putting the agent together: a root filesystem from the packages, then the initramfs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import AGENT_VERSION, BuildError, cpio, debs, elf, modules

RAMDISK = Path(__file__).resolve().parents[1] / "ramdisk" / "rootfs"
TRIPLET = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}
# The programs the agent runs (busybox supplies the shell and the basics).
PROGRAMS = (
    "lsblk blkdiscard blockdev wipefs blkid findmnt partx lscpu sfdisk nvme hdparm "
    "sg_sanitize sg_inq sg_readcap sg_vpd sg_format sg_turs sg_opcodes curl iscsiadm iscsid "
    "jq zstd xz mkfs.fat mkfs.vfat mcopy mdir mformat openssl mke2fs mkfs.ext4 tar"
).split()
BIN_DIRS = ("usr/sbin", "usr/bin", "sbin", "bin")
# SOURCE_DATE_EPOCH (reproducible-builds.org) or a fixed moment: never "now".
DEFAULT_EPOCH = 1700000000


@dataclass
class Built:
    kernel: Path
    initrd: Path
    manifest: dict = field(default_factory=dict)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy(src_root: Path, path: Path, dest_root: Path) -> None:
    rel = path.relative_to(src_root)
    target = dest_root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        return
    if path.is_symlink():
        os.symlink(os.readlink(path), target)
    else:
        shutil.copyfile(path, target)
        target.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)


def _find(tree: Path, program: str) -> Path | None:
    for directory in BIN_DIRS:
        candidate = tree / directory / program
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return None


def build(arch: str, cache: Path, output: Path, *, ca_file: Path | None = None) -> Built:
    """Build vmlinuz and initrd.img for ``arch`` into ``output``; returns them and the manifest."""
    deb = debs.check_architecture(arch)
    kernel_name = debs.kernel_package(deb)
    names = debs.closure(deb, [*debs.TOOL_PACKAGES, "libc6"])
    packages = debs.metadata(deb, sorted({*names, kernel_name}))
    files = debs.fetch(packages, cache / "debs" / deb, deb)
    trees = {name: debs.unpack(path, cache / "unpacked" / deb) for name, path in files.items()}
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pureboot-agent-") as work:
        work_dir = Path(work)
        merged = work_dir / "packages"  # every package's files, as if installed together
        for name in sorted(trees):
            if name != kernel_name:
                shutil.copytree(trees[name], merged, symlinks=True, dirs_exist_ok=True)
        root = work_dir / "root"
        root.mkdir()
        _userland(merged, root, arch, ca_file)
        kernel_version, vmlinuz = _kernel(trees[kernel_name], root, arch)
        manifest = {
            "agent_version": AGENT_VERSION,
            "arch": arch,
            "kernel": kernel_version,
            "source_date_epoch": epoch,
            "packages": [
                {"name": p.name, "version": p.version, "file": p.filename, "sha256": p.sha256}
                for p in packages
            ],
        }
        (root / "etc" / "pureboot-agent").mkdir(parents=True, exist_ok=True)
        (root / "etc" / "pureboot-agent" / "manifest.json").write_text(
            json.dumps(manifest, indent=1, sort_keys=True) + "\n"
        )
        _overlay(root)
        initrd = output / "initrd.img"
        cpio.write(root, initrd, epoch)
        kernel = output / "vmlinuz"
        shutil.copyfile(vmlinuz, kernel)
    manifest["files"] = {
        "kernel": {"name": kernel.name, "sha256": _sha256(kernel), "size": kernel.stat().st_size},
        "initrd": {"name": initrd.name, "sha256": _sha256(initrd), "size": initrd.stat().st_size},
    }
    (output / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return Built(kernel, initrd, manifest)


def _userland(merged: Path, root: Path, arch: str, ca_file: Path | None) -> None:
    busybox = merged / "bin" / "busybox"
    if not busybox.exists():
        raise BuildError("busybox-static did not provide /bin/busybox")
    (root / "bin").mkdir()
    shutil.copyfile(busybox, root / "bin" / "busybox")
    (root / "bin" / "busybox").chmod(0o755)
    programs = []
    for program in PROGRAMS:
        found = _find(merged, program)
        if found is None:
            raise BuildError(f"no package provides {program}")
        programs.append(found)
        _copy(merged, found, root)
        real = elf.follow(merged, found)
        if real != found:
            _copy(merged, real, root)
    triplet = TRIPLET[arch]
    dirs = [f"lib/{triplet}", f"usr/lib/{triplet}", "lib", "usr/lib"]
    for lib in sorted(elf.closure(merged, programs, dirs)):
        _copy(merged, lib, root)
    # Without ld.so.cache the loader searches only its built-in directories; say where.
    etc = root / "etc"
    (etc / "pureboot-agent").mkdir(parents=True, exist_ok=True)
    (etc / "ld.so.conf").write_text("\n".join(f"/{d}" for d in dirs) + "\n")
    (etc / "pureboot-agent" / "ld-library-path").write_text(":".join(f"/{d}" for d in dirs))
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    bundle = b"".join(
        p.read_bytes()
        for p in sorted((merged / "usr" / "share" / "ca-certificates").rglob("*.crt"))
    )
    if ca_file is not None:
        bundle += b"\n" + ca_file.read_bytes()
    (etc / "ssl" / "certs").mkdir(parents=True, exist_ok=True)
    (etc / "ssl" / "certs" / "ca-certificates.crt").write_bytes(bundle)


def _kernel(tree: Path, root: Path, arch: str) -> tuple[str, Path]:
    moddirs = sorted((tree / "lib" / "modules").iterdir())
    if len(moddirs) != 1:
        raise BuildError(f"expected one kernel in {tree.name}, found {len(moddirs)}")
    version = moddirs[0].name
    vmlinuz = tree / "boot" / f"vmlinuz-{version}"
    if not vmlinuz.exists():
        raise BuildError(f"{tree.name} has no boot/vmlinuz-{version}")
    order = []
    for rel, data in modules.select(moddirs[0], modules.MODULES[arch]):
        target = root / "lib" / "modules" / version / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        order.append(f"/lib/modules/{version}/{rel}")
    (root / "etc" / "pureboot-agent").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "pureboot-agent" / "modules").write_text("\n".join(order) + "\n")
    return version, vmlinuz


def _overlay(root: Path) -> None:
    """The agent's own files (agent/ramdisk/rootfs) on top, modes as in the repository."""
    for path in cpio.entries(RAMDISK):
        target = root / path.relative_to(RAMDISK)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        shutil.copyfile(path, target)
        target.chmod(0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644)
