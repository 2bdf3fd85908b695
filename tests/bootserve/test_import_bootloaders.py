"""``manage.py import_bootloaders`` against the real Debian packages.

Needs the Debian packages ``ipxe pxelinux syslinux-common grub-efi-amd64-bin
grub-common`` (CI installs them); a missing one fails the test with the
apt-get command rather than skipping it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from bootserve.management.commands import import_bootloaders as cmd

TOP_LEVEL = [
    "undionly.kpxe",
    "ipxe.efi",
    "snponly.efi",
    "pxelinux.0",
    "lpxelinux.0",
    "ldlinux.c32",
    "libcom32.c32",
    "libutil.c32",
    "menu.c32",
    "vesamenu.c32",
    "grubnetx64.efi",
]
SOURCES = {
    "undionly.kpxe": cmd.IPXE_DIR,
    "ipxe.efi": cmd.IPXE_DIR,
    "snponly.efi": cmd.IPXE_DIR,
    "pxelinux.0": cmd.PXELINUX_DIR,
    "lpxelinux.0": cmd.PXELINUX_DIR,
    "ldlinux.c32": cmd.SYSLINUX_BIOS_DIR,
    "menu.c32": cmd.SYSLINUX_BIOS_DIR,
}


@pytest.fixture(autouse=True)
def debian_packages():
    missing = [
        package
        for package, path in [
            ("ipxe", cmd.IPXE_DIR / "undionly.kpxe"),
            ("pxelinux", cmd.PXELINUX_DIR / "lpxelinux.0"),
            ("syslinux-common", cmd.SYSLINUX_BIOS_DIR / "ldlinux.c32"),
            ("grub-efi-amd64-bin", cmd.GRUB_EFI_DIR / "normal.mod"),
        ]
        if not path.is_file()
    ]
    if shutil.which("grub-mknetdir") is None:
        missing.append("grub-common")
    if missing:
        pytest.fail(f"Debian packages missing: apt-get install -y {' '.join(missing)}")


@pytest.fixture
def root(tmp_path, settings, monkeypatch):
    settings.PUREBOOT_BOOT_ROOT = tmp_path / "boot"
    # The grub-mknetdir build is the one every machine with grub-efi-amd64-bin can
    # make; the signed image has a test of its own.
    monkeypatch.setattr(cmd, "GRUB_SIGNED", tmp_path / "no-signed-grub")
    return settings.PUREBOOT_BOOT_ROOT


def run(*args: str, verbosity: int = 1) -> str:
    out = StringIO()
    call_command("import_bootloaders", *args, stdout=out, verbosity=verbosity)
    return out.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(root: Path) -> dict[str, dict[str, str]]:
    return json.loads((root / "bootloaders.json").read_text())["files"]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def test_imports_every_bootloader_with_its_checksum(root):
    out = run()
    for name in TOP_LEVEL:
        assert (root / name).is_file(), name
        assert f"updated  {name}" in out
    for name, folder in SOURCES.items():
        assert (root / name).read_bytes() == (folder / name).read_bytes(), name
    files = manifest(root)
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert set(files) == on_disk - {"bootloaders.json"}
    for rel, entry in files.items():
        assert entry["sha256"] == sha256(root / rel), rel
    assert files["undionly.kpxe"]["origin"] == "ipxe"
    assert files["ldlinux.c32"]["origin"] == "syslinux-common"
    assert files["grubnetx64.efi"]["origin"] == "grub-efi-amd64-bin"
    assert not [p for p in root.rglob(".*")], "temporary files left behind"
    assert oct((root / "pxelinux.0").stat().st_mode & 0o777) == "0o644"


def test_grub_is_built_for_prefix_grub(root):
    run()
    image = (root / "grubnetx64.efi").read_bytes()
    assert image[:2] == b"MZ"  # a PE/COFF EFI application
    assert b"/grub\x00" in image  # its prefix, as grub-mknetdir --subdir=grub set it
    # GRUB loads these from $prefix/x86_64-efi/ before it can read any config.
    for module in ("normal.mod", "tftp.mod", "http.mod", "linux.mod", "chain.mod"):
        assert (root / "grub" / "x86_64-efi" / module).is_file(), module
    assert (root / "grub" / "x86_64-efi" / "moddep.lst").is_file()
    # Config names under grub/ are the TFTP daemon's to answer.
    assert not (root / "grub" / "grub.cfg").exists()
    assert not (root / "grub" / "x86_64-efi" / "grub.cfg").exists()
    assert not (root / "grub" / "x86_64-efi" / "core.efi").exists()


def test_a_second_run_changes_nothing(root):
    run()
    before = snapshot(root)
    text = (root / "bootloaders.json").read_bytes()
    out = run()
    assert "updated  " not in out
    assert out.startswith(f"0 of {len(before) - 1} files updated")
    assert snapshot(root) == before
    assert (root / "bootloaders.json").read_bytes() == text


def test_a_damaged_file_is_replaced_atomically(root):
    run()
    target = root / "undionly.kpxe"
    target.write_bytes(b"damaged")
    inode = target.stat().st_ino
    out = run()
    assert out.splitlines()[0] == "updated  undionly.kpxe"
    assert target.read_bytes() == (cmd.IPXE_DIR / "undionly.kpxe").read_bytes()
    assert target.stat().st_ino != inode  # a new file renamed into place, not rewritten
    assert manifest(root)["undionly.kpxe"]["sha256"] == sha256(target)


def test_the_signed_grub_is_preferred_when_installed(root, tmp_path, monkeypatch):
    signed = tmp_path / "grubnetx64.efi.signed"
    signed.write_bytes(b"MZ signed grub")
    monkeypatch.setattr(cmd, "GRUB_SIGNED", signed)
    run()
    assert (root / "grubnetx64.efi").read_bytes() == b"MZ signed grub"
    assert manifest(root)["grubnetx64.efi"] == {
        "sha256": hashlib.sha256(b"MZ signed grub").hexdigest(),
        "origin": "grub-efi-amd64-signed",
    }
    assert not (root / "grub").exists()  # its modules are built in


def test_missing_packages_are_named_with_the_apt_command(root, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in ("IPXE_DIR", "PXELINUX_DIR", "SYSLINUX_BIOS_DIR", "GRUB_EFI_DIR"):
        monkeypatch.setattr(cmd, name, empty)
    monkeypatch.setattr(cmd, "GRUB_MKNETDIR", "pureboot-no-such-grub-mknetdir")
    with pytest.raises(CommandError) as exc:
        run()
    message = str(exc.value)
    assert "apt-get install -y grub-common grub-efi-amd64-bin ipxe pxelinux syslinux-common" in (
        message
    )
    assert f"{empty}/undionly.kpxe" in message
    assert not root.exists()  # nothing written before the check


def test_one_missing_package_is_named_alone(root, tmp_path, monkeypatch):
    monkeypatch.setattr(cmd, "PXELINUX_DIR", tmp_path / "nowhere")
    with pytest.raises(CommandError, match=r"apt-get install -y pxelinux$"):
        run()
    assert not root.exists()


def test_missing_grub_modules_name_grub_efi_amd64_bin(root, tmp_path, monkeypatch):
    monkeypatch.setattr(cmd, "GRUB_EFI_DIR", tmp_path / "nowhere")
    with pytest.raises(CommandError, match=r"apt-get install -y grub-efi-amd64-bin$"):
        run()


# --- Raspberry Pi firmware -----------------------------------------------------


@pytest.fixture
def pi_folder(tmp_path):
    folder = tmp_path / "firmware-boot"
    (folder / "overlays").mkdir(parents=True)
    names = ["start4.elf", "fixup4.dat", "bootcode.bin", "bcm2711-rpi-4-b.dtb"]
    names += ["bcm2711-rpi-400.dtb", "kernel8.img", "start.elf"]
    for name in names:
        (folder / name).write_bytes(f"fake {name}".encode())
    (folder / "overlays" / "vc4-kms-v3d.dtbo").write_bytes(b"fake overlay")
    (folder / "overlays" / "README").write_text("overlays\n")
    return folder


def test_pi_firmware_is_copied_into_rpi(root, pi_folder):
    run("--pi-firmware", str(pi_folder))
    expected = {
        "rpi/start4.elf",
        "rpi/fixup4.dat",
        "rpi/bootcode.bin",
        "rpi/start.elf",
        "rpi/bcm2711-rpi-4-b.dtb",
        "rpi/bcm2711-rpi-400.dtb",
        "rpi/overlays/vc4-kms-v3d.dtbo",
        "rpi/overlays/README",
    }
    placed = {str(p.relative_to(root)) for p in (root / "rpi").rglob("*") if p.is_file()}
    assert placed == expected  # not the kernel
    # A Pi 3's boot ROM asks for bootcode.bin at the root.
    assert (root / "bootcode.bin").read_bytes() == b"fake bootcode.bin"
    files = manifest(root)
    for rel in expected:
        assert files[rel]["sha256"] == sha256(root / rel)
        assert files[rel]["origin"] == "Raspberry Pi firmware"
    assert (root / "rpi/start4.elf").read_bytes() == b"fake start4.elf"
    # A later run without --pi-firmware keeps the Pi files in the manifest.
    run()
    assert expected <= set(manifest(root))


def test_bootcode_bin_is_optional(root, pi_folder):
    (pi_folder / "bootcode.bin").unlink()
    run("--pi-firmware", str(pi_folder))
    assert (root / "rpi/start4.elf").is_file()
    assert not (root / "rpi/bootcode.bin").exists()


@pytest.mark.parametrize("missing", ["start4.elf", "fixup4.dat"])
def test_a_folder_without_pi4_firmware_is_refused(root, pi_folder, missing):
    (pi_folder / missing).unlink()
    with pytest.raises(CommandError, match=f"no {missing}"):
        run("--pi-firmware", str(pi_folder))
    assert not root.exists()


def test_a_pi_firmware_path_that_is_no_folder_is_refused(root, tmp_path):
    with pytest.raises(CommandError, match="not a folder"):
        run("--pi-firmware", str(tmp_path / "nope"))


def test_links_in_a_pi_firmware_bundle_are_never_followed(root, pi_folder, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("controller secret\n")
    (pi_folder / "bcm2711-rpi-cm4.dtb").symlink_to(secret)
    (pi_folder / "overlays" / "leak.dtbo").symlink_to(secret)
    (pi_folder / "bootcode.bin").unlink()
    (pi_folder / "bootcode.bin").symlink_to(secret)
    run("--pi-firmware", str(pi_folder))
    placed = [p for p in root.rglob("*") if p.is_file()]
    assert all(b"controller secret" not in p.read_bytes() for p in placed)
    assert not (root / "rpi/bcm2711-rpi-cm4.dtb").exists()
    assert not (root / "bootcode.bin").exists()
    (pi_folder / "start4.elf").unlink()
    (pi_folder / "start4.elf").symlink_to(secret)
    with pytest.raises(CommandError, match="no start4.elf"):
        run("--pi-firmware", str(pi_folder))
