"""Operator commands for Windows: import_wimboot (the file's format checked), and what it registers."""

from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from workflows.models import BootImage

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
        (b"MZ" + b"\0" * (5 * 1024 * 1024), "wimboot is under 1 MB"),
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


def test_a_missing_file_is_named(tmp_path, boot_root):
    with pytest.raises(CommandError, match="no such file; download wimboot"):
        call_command("import_wimboot", str(tmp_path / "nope"), stdout=StringIO())
