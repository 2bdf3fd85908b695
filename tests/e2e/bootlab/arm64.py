"""ARM64 machines for the boot lab: QEMU's ``virt`` board under TCG.

- firmware: Debian's AAVMF (``qemu-efi-aarch64``): ``AAVMF_CODE.fd`` read-only
  and a copy of ``AAVMF_VARS.fd`` per machine, as two pflash drives. The NIC
  (virtio-net, AAVMF's own driver: no option ROM) comes first in the boot
  order, the disk second, as an operator sets up a network-provisioned server.
- or no firmware at all: direct kernel boot (``-kernel/-initrd/-append``).
- arm64 packages (kernel, busybox, GRUB's arm64-efi modules) are Debian's,
  fetched and checked against apt's index by the agent build's own code
  (``agent.build.debs``) into the cache the agent lab already fills, so the
  arm64 kernel is downloaded once for both labs.

A missing tool fails the lab naming its Debian package, never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from agent.build import BuildError, cpio, debs, modules

from . import artifacts
from .lab import VM, Lab

AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")
DEB = "arm64"
GRUB_PACKAGE = "grub-efi-arm64-bin"

# tool -> Debian package (on top of artifacts.TOOLS)
TOOLS = {
    "qemu-system-aarch64": "qemu-system-arm",
    "grub-mkstandalone": "grub-common",
    "mcopy": "mtools",
    "mmd": "mtools",
    "mkfs.fat": "dosfstools",
    "sfdisk": "fdisk",
    "dpkg-deb": "dpkg",
}
FILES = {str(AAVMF_CODE): "qemu-efi-aarch64", str(AAVMF_VARS): "qemu-efi-aarch64"}


def require(tools: dict[str, str] = TOOLS, files: dict[str, str] = FILES) -> None:
    """Fail (never skip) naming every Debian package that is missing."""
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    missing = sorted(
        {pkg for name, pkg in tools.items() if not shutil.which(name, path=path)}
        | {pkg for name, pkg in files.items() if not Path(name).exists()}
    )
    if missing:
        pytest.fail(f"boot lab: missing Debian packages: apt-get install {' '.join(missing)}")


def which(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    if not found:
        pytest.fail(f"boot lab: {name} is missing: apt-get install {TOOLS.get(name, name)}")
    return found


# --- Debian's arm64 packages ---------------------------------------------------------


def enable_arm64() -> None:
    """``dpkg --add-architecture arm64`` and ``apt-get update`` once (the lab runs as root)."""
    foreign = subprocess.run(
        ["dpkg", "--print-foreign-architectures"], capture_output=True, text=True
    ).stdout.split()
    if DEB not in foreign:
        artifacts.run("dpkg", "--add-architecture", DEB)
        artifacts.run("apt-get", "update", "-qq", timeout=900)


def packages(names: list[str]) -> dict[str, Path]:
    """Each package's unpacked tree (cached, checked against apt's SHA-256)."""
    enable_arm64()
    cache = artifacts.cache_dir() / "agent"
    try:
        debs.check_architecture("aarch64")
        found = debs.metadata(DEB, names)
        files = debs.fetch(found, cache / "debs" / DEB, DEB)
        return {name: debs.unpack(path, cache / "unpacked" / DEB) for name, path in files.items()}
    except BuildError as exc:
        pytest.fail(f"boot lab: arm64 packages {names}: {exc}")


def kernel() -> tuple[Path, Path]:
    """(vmlinuz, modules dir) of Debian's current arm64 kernel."""
    enable_arm64()
    try:
        name = debs.kernel_package(DEB)
    except BuildError as exc:
        pytest.fail(f"boot lab: {exc}")
    tree = packages([name])[name]
    moddir = next((tree / "lib" / "modules").iterdir())
    return tree / "boot" / f"vmlinuz-{moddir.name}", moddir


def busybox() -> Path:
    return packages(["busybox-static"])["busybox-static"] / "bin" / "busybox"


def grub_modules() -> Path:
    """GRUB's arm64-efi module folder from Debian's ``grub-efi-arm64-bin:arm64``."""
    folder = packages([GRUB_PACKAGE])[GRUB_PACKAGE] / "usr" / "lib" / "grub" / "arm64-efi"
    if not (folder / "normal.mod").is_file():
        pytest.fail(f"boot lab: {GRUB_PACKAGE}:arm64 has no usr/lib/grub/arm64-efi/normal.mod")
    return folder


# --- images ------------------------------------------------------------------------------

ESP_MB = 24
PART_START = 2048  # sectors


def esp_disk(path: Path, grub_cfg: str) -> Path:
    """An MBR disk with one EFI system partition holding ``\\EFI\\BOOT\\BOOTAA64.EFI``:
    a standalone GRUB (from Debian's arm64 modules) whose embedded config is ``grub_cfg``.
    Written without root (mtools)."""
    require()
    work = path.parent / f"{path.name}.d"
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "grub.cfg"
    cfg.write_text(grub_cfg)
    efi = work / "BOOTAA64.EFI"
    artifacts.run(
        which("grub-mkstandalone"),
        "-O",
        "arm64-efi",
        "-d",
        str(grub_modules()),
        "-o",
        str(efi),
        "--install-modules=normal echo halt reboot configfile sleep",
        "--locales=",
        "--fonts=",
        "--themes=",
        f"boot/grub/grub.cfg={cfg}",
    )
    with path.open("wb") as f:
        f.truncate(ESP_MB * 1024 * 1024)
    subprocess.run(
        [which("sfdisk"), "-q", str(path)],
        input=f"label: dos\nstart={PART_START}, type=ef\n",
        text=True,
        check=True,
        capture_output=True,
    )
    sectors = ESP_MB * 1024 * 1024 // 512 - PART_START
    artifacts.run(
        which("mkfs.fat"), "-F", "16", "-n", "PBLABESP", "--offset", str(PART_START),
        str(path), str(sectors // 2),
    )  # fmt: skip
    image = f"{path}@@{PART_START * 512}"
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    for args in (
        [which("mmd"), "-i", image, "::/EFI", "::/EFI/BOOT"],
        [which("mcopy"), "-i", image, str(efi), "::/EFI/BOOT/BOOTAA64.EFI"],
    ):
        done = subprocess.run(args, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            pytest.fail(f"boot lab: {' '.join(args)} failed:\n{done.stderr}")
    shutil.rmtree(work, ignore_errors=True)
    return path


def initramfs(
    out: Path, init: bytes, wanted: list[str], files: dict[str, bytes] | None = None
) -> Path:
    """An arm64 initramfs: busybox, ``wanted`` kernel modules (with their dependencies,
    listed in load order in ``/modules.order``), ``init`` and ``files``."""
    _, moddir = kernel()
    try:
        chosen = modules.select(moddir, wanted)
    except BuildError as exc:
        pytest.fail(f"boot lab: {exc}")
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        root = Path(tmp)
        for d in ("bin", "dev", "proc", "sys", "tmp", "mnt", "modules"):
            (root / d).mkdir()
        shutil.copyfile(busybox(), root / "bin" / "busybox")
        (root / "bin" / "busybox").chmod(0o755)
        (root / "init").write_bytes(init)
        (root / "init").chmod(0o755)
        names = []
        for index, (rel, data) in enumerate(chosen):
            name = f"{index:02d}-{Path(rel).name}"
            (root / "modules" / name).write_bytes(data)
            names.append(name)
        (root / "modules.order").write_text("\n".join(names) + "\n")
        for name, data in (files or {}).items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(0o755)
        cpio.write(root, out, 1700000000)
    return out


# --- machines ----------------------------------------------------------------------------


class ArmVM(VM):
    """An ARM64 machine on the lab bridge: AAVMF, network first, then its disk.

    ``pxe=False`` switches AAVMF's PXE off, leaving UEFI HTTP Boot (DHCP client
    architecture 19) as its network entry.

    With ``kernel`` = (vmlinuz, initrd, command line) it boots that kernel
    directly instead (no firmware, no disk).
    """

    def __init__(
        self,
        lab: Lab,
        name: str,
        mac: str,
        *,
        disk: Path | None = None,
        kernel: tuple[Path, Path, str] | None = None,
        memory: int = 512,
        pxe: bool = True,
    ) -> None:
        require()
        super().__init__(lab, name, mac, "uefi", disk="blank", system_uuid=None, pxe=pxe)
        self.kernel = kernel
        self.memory = memory
        shutil.copyfile(AAVMF_VARS, self.dir / "vars.fd")
        if disk is not None:
            shutil.copyfile(disk, self.disk)

    def command(self) -> list[str]:
        cmd = [
            which("qemu-system-aarch64"),
            "-M", "virt", "-cpu", "cortex-a57", "-m", str(self.memory),
            "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", f"file:{self.console}",
            "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
        ]  # fmt: skip
        if self.kernel is not None:
            vmlinuz, initrd, append = self.kernel
            return cmd + [
                "-kernel", str(vmlinuz), "-initrd", str(initrd), "-append", append,
                "-device", f"virtio-net-pci,netdev=n0,mac={self.mac},romfile=",
            ]  # fmt: skip
        return cmd + [
            "-smbios", f"type=1,uuid={self.uuid}",
            "-drive", f"if=pflash,format=raw,readonly=on,file={AAVMF_CODE}",
            "-drive", f"if=pflash,format=raw,file={self.dir / 'vars.fd'}",
            "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n",
            # pxe=False: no PXEv4 entry either, so HTTP Boot over IPv4 comes first.
            "-fw_cfg", f"name=opt/org.tianocore/IPv4PXESupport,string={'y' if self.pxe else 'n'}",
            # AAVMF's own virtio-net driver and PXE, as on a real ARM64 server.
            "-device", f"virtio-net-pci,netdev=n0,mac={self.mac},bootindex=1,romfile=",
            "-drive", f"file={self.disk},if=none,id=d0,format=raw",
            "-device", "virtio-blk-pci,drive=d0,bootindex=2",
        ]  # fmt: skip
