"""The boot lab's tiny Linux and the OS image it installs, built from Debian packages.

- kernel: Debian's ``linux-image-amd64`` (downloaded with ``apt-get download``,
  unpacked with ``dpkg -x``: installing it would pull in systemd), cached
  under ``PUREBOOT_LAB_CACHE`` (default ``~/.cache/pureboot-lab``).
- initramfs: busybox-static, the virtio modules the kernel needs (in
  dependency order, from ``modinfo``), and ``init.sh``.
- OS image: an MBR disk with one FAT partition that boots the same kernel
  with ``pb.mode=os``: SYSLINUX for BIOS, a standalone GRUB as
  ``\\EFI\\BOOT\\BOOTX64.EFI`` for UEFI. Written without root (mtools).

A missing tool fails the lab with the Debian package that provides it.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).parent
MODULES = ("virtio_pci", "virtio_net", "virtio_blk")
DISK_MB = 48
PART_START = 2048  # sectors; the first-boot token lives at sector 1024

# tool -> Debian package
TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "ip": "iproute2",
    "dnsmasq": "dnsmasq-base",
    "busybox": "busybox-static",
    "syslinux": "syslinux",
    "mcopy": "mtools",
    "mkfs.fat": "dosfstools",
    "sfdisk": "fdisk",
    "debugfs": "e2fsprogs",
    "mtype": "mtools",
    "grub-mkstandalone": "grub-common",
    "dpkg": "dpkg",
    "apt-get": "apt",
    "apt-cache": "apt",
    "curl": "curl",
    "libvirtd": "libvirt-daemon-system",
    "unshare": "util-linux",
    "wimlib-imagex": "wimtools",
}
FILES = {
    "/usr/lib/ipxe/qemu/pxe-virtio.rom": "ipxe-qemu",
    "/usr/lib/ipxe/undionly.kpxe": "ipxe",
    "/usr/share/OVMF/OVMF_CODE_4M.fd": "ovmf",
    "/usr/lib/PXELINUX/pxelinux.0": "pxelinux",
    "/usr/lib/syslinux/mbr/mbr.bin": "syslinux-common",
    "/usr/lib/grub/x86_64-efi/linux.mod": "grub-efi-amd64-bin",
}


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    if not found:
        pytest.fail(f"boot lab: {name} is missing: apt-get install {TOOLS[name]}")
    return found


def require_tools() -> None:
    """Fail loudly (never skip) naming every missing package."""
    missing = sorted(
        {pkg for name, pkg in TOOLS.items() if not shutil.which(name, path=_PATH)}
        | {pkg for path, pkg in FILES.items() if not Path(path).exists()}
    )
    if missing:
        pytest.fail(f"boot lab: missing Debian packages: apt-get install {' '.join(missing)}")
    if os.geteuid() != 0:
        pytest.fail("boot lab: needs root for network namespaces and tap devices")


_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(*args: str, cwd: Path | None = None, timeout: float = 300) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"boot lab: {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "pureboot-lab"
    path = Path(os.environ.get("PUREBOOT_LAB_CACHE") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- kernel -----------------------------------------------------------------


def kernel() -> tuple[Path, Path]:
    """(vmlinuz, modules dir) of Debian's current amd64 kernel, cached."""
    depends = subprocess.run(
        [tool("apt-cache"), "depends", "linux-image-amd64"], capture_output=True, text=True
    ).stdout
    if "Depends: linux-image-" not in depends:  # no package lists yet
        run(tool("apt-get"), "update", "-qq", timeout=600)
        depends = run(tool("apt-cache"), "depends", "linux-image-amd64")
    package = next(
        (
            line.split(":", 1)[1].strip()
            for line in depends.splitlines()
            if line.strip().startswith("Depends: linux-image-")
        ),
        None,
    )
    if package is None:
        pytest.fail(f"boot lab: cannot tell which kernel linux-image-amd64 is:\n{depends}")
    root = cache_dir() / package
    vmlinuz = next(iter(sorted((root / "boot").glob("vmlinuz-*"))), None) if root.exists() else None
    if vmlinuz is None:
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            run(tool("apt-get"), "download", "-qq", package, cwd=Path(tmp), timeout=600)
            deb = next(Path(tmp).glob("*.deb"))
            unpacked = Path(tmp) / "x"
            run(tool("dpkg"), "-x", str(deb), str(unpacked))
            shutil.rmtree(root, ignore_errors=True)
            unpacked.rename(root)
        vmlinuz = next(iter(sorted((root / "boot").glob("vmlinuz-*"))))
    modules = next((root / "lib" / "modules").iterdir())
    return vmlinuz, modules


def _depends(path: Path) -> list[str]:
    """The ``depends=`` entry of a module's .modinfo section (what modinfo prints)."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        data = lzma.decompress(data)
    start = data.find(b"\0depends=")
    if start < 0:
        return []
    value = data[start + len(b"\0depends=") : data.index(b"\0", start + 1)]
    return [name for name in value.decode().split(",") if name]


def module_order(modules_dir: Path, wanted: tuple[str, ...] = MODULES) -> list[Path]:
    """``wanted`` and their dependencies, each after what it needs."""
    by_name = {p.name.split(".ko")[0].replace("-", "_"): p for p in modules_dir.rglob("*.ko*")}
    order: list[Path] = []

    def visit(name: str) -> None:
        path = by_name.get(name.replace("-", "_"))
        if path is None:
            pytest.fail(f"boot lab: kernel module {name} not found in {modules_dir}")
        if path in order:
            return
        for dep in _depends(path):
            visit(dep)
        order.append(path)

    for name in wanted:
        visit(name)
    return order


# --- initramfs (newc cpio, written here: no cpio binary needed) -------------


def _cpio_entry(out: io.BytesIO, name: str, data: bytes, mode: int, ino: int) -> None:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    out.write(header + name.encode() + b"\0")
    out.write(b"\0" * ((4 - out.tell() % 4) % 4))
    out.write(data)
    out.write(b"\0" * ((4 - out.tell() % 4) % 4))


def initramfs(modules_dir: Path) -> bytes:
    files: list[tuple[str, bytes, int]] = []
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "modules"):
        files.append((d, b"", 0o040755))
    files.append(("bin/busybox", Path(tool("busybox")).read_bytes(), 0o100755))
    files.append(("init", (HERE / "init.sh").read_bytes(), 0o100755))
    files.append(("udhcpc.sh", (HERE / "udhcpc.sh").read_bytes(), 0o100755))
    names = []
    for path in module_order(modules_dir):
        data = path.read_bytes()
        if path.name.endswith(".xz"):
            data = lzma.decompress(data)
        name = path.name.split(".ko")[0]
        names.append(name)
        files.append((f"modules/{name}.ko", data, 0o100644))
    files.append(("modules.order", "\n".join(names).encode() + b"\n", 0o100644))
    out = io.BytesIO()
    for ino, (name, data, mode) in enumerate(files, start=1):
        _cpio_entry(out, name, data, mode, ino)
    _cpio_entry(out, "TRAILER!!!", b"", 0, 0)
    return gzip.compress(out.getvalue(), compresslevel=6, mtime=0)


# --- the OS image -------------------------------------------------------------

SYSLINUX_CFG = """DEFAULT os
PROMPT 0
TIMEOUT 0
LABEL os
  KERNEL /vmlinuz
  APPEND initrd=/initrd.gz console=ttyS0 panic=-1 pb.mode=os
"""
GRUB_CFG = """search --no-floppy --file --set=root /pureboot-lab-os
linux ($root)/vmlinuz console=ttyS0 panic=-1 pb.mode=os
initrd ($root)/initrd.gz
boot
"""


def os_image(vmlinuz: Path, initrd: bytes, workdir: Path) -> Path:
    """A raw disk that boots the tiny Linux as 'the installed OS' on BIOS and UEFI."""
    workdir.mkdir(parents=True, exist_ok=True)
    disk = workdir / "os.img"
    with disk.open("wb") as f:
        f.truncate(DISK_MB * 1024 * 1024)
    layout = f"label: dos\nstart={PART_START}, type=ef, bootable\n"
    subprocess.run(
        [tool("sfdisk"), "-q", str(disk)],
        input=layout,
        text=True,
        check=True,
        capture_output=True,
    )
    offset = PART_START * 512
    sectors = (DISK_MB * 1024 * 1024) // 512 - PART_START
    run(
        tool("mkfs.fat"),
        "-F",
        "16",
        "-n",
        "PBLABOS",
        "--offset",
        str(PART_START),
        "-h",
        str(PART_START),
        str(disk),
        str(sectors // 2),
    )
    run(tool("syslinux"), "--offset", str(offset), "--install", str(disk))
    mbr = Path("/usr/lib/syslinux/mbr/mbr.bin").read_bytes()
    with disk.open("r+b") as f:
        f.write(mbr[:440])
    grub_cfg = workdir / "grub.cfg"
    grub_cfg.write_text(GRUB_CFG)
    efi = workdir / "BOOTX64.EFI"
    run(
        tool("grub-mkstandalone"),
        "-O",
        "x86_64-efi",
        "-o",
        str(efi),
        "--install-modules=linux normal search search_fs_file part_msdos fat echo configfile",
        "--modules=part_msdos fat",
        "--locales=",
        "--fonts=",
        "--themes=",
        f"boot/grub/grub.cfg={grub_cfg}",
    )
    (workdir / "initrd.gz").write_bytes(initrd)
    (workdir / "syslinux.cfg").write_text(SYSLINUX_CFG)
    (workdir / "pureboot-lab-os").write_text("the lab OS\n")
    image = f"{disk}@@{offset}"
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    for args in (
        ["mmd", "-i", image, "::/EFI", "::/EFI/BOOT"],
        ["mcopy", "-i", image, str(efi), "::/EFI/BOOT/BOOTX64.EFI"],
        ["mcopy", "-i", image, str(vmlinuz), "::/vmlinuz"],
        ["mcopy", "-i", image, str(workdir / "initrd.gz"), "::/initrd.gz"],
        ["mcopy", "-i", image, str(workdir / "syslinux.cfg"), "::/syslinux.cfg"],
        ["mcopy", "-i", image, str(workdir / "pureboot-lab-os"), "::/pureboot-lab-os"],
    ):
        done = subprocess.run(args, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            pytest.fail(f"boot lab: {' '.join(args)} failed:\n{done.stderr}")
    return disk


def build(boot_root: Path, workdir: Path) -> dict[str, Path]:
    """Put the lab's kernel, installer initrd and gzipped OS image under ``boot_root/lab``."""
    vmlinuz, modules_dir = kernel()
    initrd = initramfs(modules_dir)
    target = boot_root / "lab"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(vmlinuz, target / "vmlinuz")
    (target / "initrd.gz").write_bytes(initrd)
    disk = os_image(vmlinuz, initrd, workdir)
    with disk.open("rb") as src, gzip.open(target / "os.img.gz", "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
    return {
        "vmlinuz": target / "vmlinuz",
        "initrd": target / "initrd.gz",
        "image": target / "os.img.gz",
        "disk": disk,
    }
