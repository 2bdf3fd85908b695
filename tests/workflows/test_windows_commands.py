"""Operator commands for Windows: import_wimboot (its format checked) and inject_drivers."""

from __future__ import annotations

import hashlib
import os
import subprocess
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from workflows.management.commands import inject_drivers
from workflows.models import BootImage

from . import isofactory

pytestmark = pytest.mark.django_db


def wimboot_like(size: int = 60_000) -> bytes:
    """The layout wimboot has: a PE header ("MZ") and the bzImage magic at 0x202."""
    data = bytearray(b"MZ" + b"\0" * (size - 2))
    data[0x202:0x206] = b"HdrS"
    return bytes(data)


@pytest.fixture
def boot_root(settings, tmp_path):
    settings.PUREBOOT_BOOT_ROOT = tmp_path / "boot"
    return settings.PUREBOOT_BOOT_ROOT


def test_wimboot_is_imported_and_served_from_the_boot_root(tmp_path, boot_root):
    path = tmp_path / "wimboot"
    path.write_bytes(wimboot_like())
    out = StringIO()
    call_command("import_wimboot", str(path), stdout=out)
    image = BootImage.objects.get(name="wimboot")
    assert (image.family, image.arch) == ("wimboot", "x86_64")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert image.files["wimboot"] == {"name": "wimboot", "sha256": digest, "size": 60_000}
    assert (boot_root / "wimboot" / "wimboot").read_bytes() == path.read_bytes()
    assert AuditEvent.objects.filter(action="bootimage.import", object_id=str(image.pk)).exists()
    # Again: only with --replace.
    with pytest.raises(CommandError, match="--replace"):
        call_command("import_wimboot", str(path), stdout=StringIO())
    path.write_bytes(wimboot_like(70_000))
    call_command("import_wimboot", str(path), "--replace", stdout=StringIO())
    assert BootImage.objects.get(name="wimboot").files["wimboot"]["size"] == 70_000


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "is empty"),
        (b"#!ipxe\nkernel wimboot\n" * 40, "not a PE image"),
        (b"MZ" + b"\0" * 4000, "no bzImage header"),
        (b"MZ" + b"\0" * (17 * 1024 * 1024), "wimboot is about 60 KB"),
    ],
)
def test_what_is_not_wimboot_is_refused_saying_where_to_get_it(
    tmp_path, boot_root, content, message
):
    path = tmp_path / "wimboot"
    path.write_bytes(content)
    with pytest.raises(CommandError, match=message) as refused:
        call_command("import_wimboot", str(path), stdout=StringIO())
    assert "https://github.com/ipxe/wimboot/releases" in str(refused.value)
    assert not BootImage.objects.exists()
    assert not boot_root.exists() or not [p for p in boot_root.iterdir()]


@pytest.mark.parametrize(
    "real,message",
    [
        # Debian package ipxe: a UEFI-only PE image, and a BIOS-only bzImage.
        ("/boot/ipxe.efi", "no bzImage header"),
        ("/boot/ipxe.lkrn", "not a PE image"),
    ],
)
def test_real_boot_loaders_that_are_not_wimboot_are_refused(boot_root, real, message):
    if not Path(real).is_file():
        pytest.fail(f"{real} not found (Debian package: ipxe)")
    with pytest.raises(CommandError, match=message):
        call_command("import_wimboot", real, stdout=StringIO())
    assert not BootImage.objects.exists()


def test_a_missing_file_is_named(tmp_path, boot_root):
    with pytest.raises(CommandError, match="no such file; download wimboot"):
        call_command("import_wimboot", str(tmp_path / "nope"), stdout=StringIO())


@pytest.fixture
def windows_image(tmp_path, boot_root):
    """A Windows boot image imported by import_iso from media with a real boot.wim."""
    boot_wim = isofactory.real_wim(tmp_path / "boot.wim", editions=("Microsoft Windows PE",))
    iso = isofactory.windows(tmp_path / "win.iso", build="22621", boot=boot_wim)
    call_command("import_iso", str(iso.path), "--name", "win11", stdout=StringIO())
    return BootImage.objects.get(name="win11")


def drivers(tmp_path) -> Path:
    folder = tmp_path / "drivers"
    (folder / "net").mkdir(parents=True)
    (folder / "net" / "e1000.inf").write_text('[Version]\r\nSignature="$WINDOWS NT$"\r\n')
    (folder / "net" / "e1000.sys").write_bytes(b"\0" * 4096)
    return folder


def test_drivers_go_into_a_new_image_and_the_source_is_untouched(
    tmp_path, boot_root, windows_image
):
    before = (boot_root / "win11" / "boot.wim").read_bytes()
    out = StringIO()
    call_command(
        "inject_drivers", "win11", str(drivers(tmp_path)), "--model", "OptiPlex 7010", stdout=out
    )
    new = BootImage.objects.get(name="win11-optiplex-7010")
    assert (new.family, new.arch) == ("windows", windows_image.arch)
    assert new.files["boot_wim"]["drivers"] == {
        "model": "OptiPlex 7010",
        "folder": "Drivers/optiplex-7010",
        "infs": ["net/e1000.inf"],
    }
    assert new.files["install_wim"] == windows_image.files["install_wim"]
    assert (boot_root / "win11" / "boot.wim").read_bytes() == before
    wim_path = boot_root / "win11-optiplex-7010" / "boot.wim"
    assert hashlib.sha256(wim_path.read_bytes()).hexdigest() == new.files["boot_wim"]["sha256"]
    listing = subprocess.run(
        ["wimlib-imagex", "dir", str(wim_path), "1", "--path=/Drivers"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "/Drivers/optiplex-7010/net/e1000.inf" in listing
    # The install image is shared, not copied, on one file system.
    assert (boot_root / "win11-optiplex-7010" / "install.wim").stat().st_ino == (
        boot_root / "win11" / "install.wim"
    ).stat().st_ino


@pytest.mark.parametrize("bad", ["link", "no-inf", "fifo"])
def test_a_driver_folder_that_cannot_be_trusted_is_refused(tmp_path, boot_root, windows_image, bad):
    folder = drivers(tmp_path)
    if bad == "link":
        (folder / "net" / "passwd.inf").symlink_to("/etc/passwd")
    elif bad == "no-inf":
        (folder / "net" / "e1000.inf").unlink()
    else:
        os.mkfifo(folder / "net" / "pipe")
    message = {"link": "a link", "no-inf": "no .inf file", "fifo": "not a regular file"}[bad]
    with pytest.raises(CommandError, match=message):
        call_command("inject_drivers", "win11", str(folder), "--model", "X1", stdout=StringIO())
    assert list(BootImage.objects.values_list("name", flat=True)) == ["win11"]
    assert sorted(p.name for p in boot_root.iterdir() if not p.name.startswith(".")) == ["win11"]


def test_only_windows_images_take_drivers(tmp_path, boot_root):
    BootImage.objects.create(name="deb", family="debian", arch="x86_64")
    with pytest.raises(CommandError, match="no Windows boot image"):
        call_command(
            "inject_drivers", "deb", str(drivers(tmp_path)), "--model", "X1", stdout=StringIO()
        )


@pytest.mark.parametrize("limit", ["MAX_FILES", "MAX_BYTES"])
def test_a_driver_folder_over_the_limits_is_refused(
    tmp_path, boot_root, windows_image, monkeypatch, limit
):
    folder = drivers(tmp_path)
    for n in range(5):
        (folder / "net" / f"extra{n}.cat").write_bytes(b"x" * 1000)
    monkeypatch.setattr(inject_drivers, limit, 3)
    message = "more than 3 files" if limit == "MAX_FILES" else "more than 3 bytes"
    with pytest.raises(CommandError, match=message):
        call_command("inject_drivers", "win11", str(folder), "--model", "X1", stdout=StringIO())
    assert BootImage.objects.count() == 1


def test_the_new_image_can_be_named_and_replaced_only_when_asked(
    tmp_path, boot_root, windows_image
):
    folder = drivers(tmp_path)
    args = ("inject_drivers", "win11", str(folder), "--model", "X1", "--name", "win11-lab")
    call_command(*args, stdout=StringIO())
    assert BootImage.objects.get(name="win11-lab").files["boot_wim"]["drivers"]["model"] == "X1"
    with pytest.raises(CommandError, match="boot image win11-lab exists; use --replace"):
        call_command(*args, stdout=StringIO())
    call_command(*args, "--replace", stdout=StringIO())
    with pytest.raises(CommandError, match="use lower-case letters"):
        call_command(*args[:-1], "Bad Name", stdout=StringIO())
    with pytest.raises(CommandError, match="name a hardware model"):
        call_command("inject_drivers", "win11", str(folder), "--model", "!!!", stdout=StringIO())
