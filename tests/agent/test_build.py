"""The agent build's parts: the reproducible cpio, the ELF and module closures,
the package selection, and the command's errors. The whole build from Debian
packages (downloads) runs in the agent lab (tests/e2e/test_agent_lab.py)."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agent.build import BuildError, cpio, debs, elf, modules
from workflows.bootimages import BootImageExists, install_boot_image
from workflows.models import BootImage


def tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "etc").mkdir()
    (root / "etc" / "conf").write_text("x=1\n")
    (root / "etc" / "conf").chmod(0o600)
    (root / "sbin").symlink_to("bin")
    return root


def test_the_initramfs_is_byte_for_byte_reproducible_and_reads_back(tmp_path):
    root = tree(tmp_path / "root")
    one, two = tmp_path / "one.gz", tmp_path / "two.gz"
    cpio.write(root, one, 1700000000)
    (root / "etc" / "conf").touch()  # a newer mtime on disk changes nothing
    cpio.write(root, two, 1700000000)
    assert one.read_bytes() == two.read_bytes()
    entries = cpio.read(one)
    assert list(entries) == ["bin", "bin/tool", "etc", "etc/conf", "sbin"]
    mode, data = entries["bin/tool"]
    assert stat.S_ISREG(mode) and mode & 0o777 == 0o755 and data.startswith(b"#!/bin/sh")
    assert entries["etc/conf"][0] & 0o777 == 0o644  # owner root, readable
    assert stat.S_ISLNK(entries["sbin"][0]) and entries["sbin"][1] == b"bin"
    cpio.write(root, two, 1700000001)
    assert one.read_bytes() != two.read_bytes()  # the stamp is in it


def test_the_library_closure_of_a_real_binary_includes_its_libraries_and_loader():
    assert Path("/usr/bin/curl").exists(), "curl is missing: apt-get install curl"
    dirs = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib"]
    found = {p.name for p in elf.closure(Path("/"), [Path("/usr/bin/curl")], dirs)}
    assert "libcurl.so.4" in found and "libc.so.6" in found
    assert any(name.startswith("ld-linux") for name in found)


def test_a_library_no_package_provides_is_a_build_error(tmp_path):
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    shutil.copyfile("/usr/bin/curl", root / "usr" / "bin" / "curl")
    with pytest.raises(BuildError, match="needs the loader|needs lib"):
        elf.closure(root, [root / "usr" / "bin" / "curl"], ["lib", "usr/lib"])


def fake_module(path: Path, depends: str) -> None:
    """An ELF file with a .modinfo section, as a kernel module has (objcopy, binutils)."""
    objcopy = shutil.which("objcopy")
    assert objcopy, "objcopy is missing: apt-get install binutils"
    info = path.with_suffix(".modinfo")
    info.write_bytes(f"license=GPL\0depends={depends}\0name={path.stem}\0".encode())
    shutil.copyfile("/usr/bin/true", path)
    subprocess.run([objcopy, "--add-section", f".modinfo={info}", str(path)], check=True)
    info.unlink()


def test_modules_come_with_their_dependencies_first(tmp_path):
    moddir = tmp_path / "6.1.0-test"
    (moddir / "kernel" / "drivers").mkdir(parents=True)
    fake_module(moddir / "kernel" / "drivers" / "virtio_blk.ko", "virtio,virtio_ring")
    fake_module(moddir / "kernel" / "drivers" / "virtio.ko", "virtio_ring")
    fake_module(moddir / "kernel" / "drivers" / "virtio_ring.ko", "")
    fake_module(moddir / "kernel" / "drivers" / "sdhci-pci.ko", "")
    (moddir / "modules.builtin").write_text("kernel/net/packet/af_packet.ko\n")
    order = [rel for rel, _ in modules.select(moddir, ["virtio_blk", "sdhci_pci", "af_packet"])]
    assert order == [
        "kernel/drivers/virtio_ring.ko",
        "kernel/drivers/virtio.ko",
        "kernel/drivers/virtio_blk.ko",
        "kernel/drivers/sdhci-pci.ko",
    ]
    with pytest.raises(BuildError, match="no module 'floppy'"):
        modules.select(moddir, ["floppy"])


APT_DEPENDS = """nvme-cli
  Depends: libnvme1
libnvme1
 |Depends: libsystemd0
  Depends: libelogind0
libsystemd0
libelogind0
  Depends: perl-base
perl-base
zlib1g
<libc-dev>
"""


def test_only_the_tools_and_their_libraries_go_in(monkeypatch):
    monkeypatch.setattr(debs, "_run", lambda args, cwd=None: APT_DEPENDS)
    assert debs.closure("amd64", ["nvme-cli"]) == ["libnvme1", "libsystemd0", "nvme-cli", "zlib1g"]


def test_a_foreign_architecture_apt_does_not_know_says_how_to_add_it(monkeypatch):
    answers = {"--print-architecture": "amd64\n", "--print-foreign-architectures": "\n"}
    monkeypatch.setattr(debs, "_run", lambda args, cwd=None: answers[args[1]])
    with pytest.raises(BuildError, match="dpkg --add-architecture arm64 && apt-get update"):
        debs.check_architecture("aarch64")
    with pytest.raises(BuildError, match="unknown architecture 'sparc'"):
        debs.check_architecture("sparc")


def test_the_command_turns_build_errors_into_messages(monkeypatch, tmp_path):
    with pytest.raises(CommandError, match="--ca-file .*no such file"):
        call_command("build_agent", "--ca-file", str(tmp_path / "missing.pem"))

    def fail(*args, **kwargs):
        raise BuildError("apt-get download …: could not resolve deb.debian.org")

    monkeypatch.setattr("agent.build.image.build", fail)
    with pytest.raises(CommandError, match="cannot build the agent: apt-get download"):
        call_command("build_agent", "--output", str(tmp_path / "out"))


@pytest.mark.django_db
def test_a_boot_image_is_registered_whole_or_not_at_all(tmp_path, settings):
    settings.PUREBOOT_BOOT_ROOT = tmp_path / "boot"
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    kernel.write_bytes(b"k"), initrd.write_bytes(b"i")
    files = {
        "kernel": {"name": "vmlinuz", "sha256": "a" * 64, "size": 1},
        "initrd": {"name": "initrd.img", "sha256": "b" * 64, "size": 1},
    }
    common = dict(name="pureboot-agent-x86_64", family="pureboot-agent", arch="x86_64")
    install_boot_image(
        **common, version="1", files=files, source="t", sources={"kernel": kernel, "initrd": initrd}
    )
    assert (tmp_path / "boot" / "pureboot-agent-x86_64" / "initrd.img").read_bytes() == b"i"
    with pytest.raises(BootImageExists):
        install_boot_image(**common, version="2", files=files, source="t", sources={})
    assert BootImage.objects.get().version == "1"
