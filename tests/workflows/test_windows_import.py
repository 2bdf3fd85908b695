"""Importing Windows media: the boot files, install.wim (or .esd) and its editions, by real wimlib.

The ISOs are built with pycdlib as Microsoft lays them out (UDF names only),
holding a real WIM made with ``wimlib-imagex capture``; hostile WIMs are a
clear error and leave nothing behind.
"""

from __future__ import annotations

import hashlib
import subprocess
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from workflows.models import BootImage

from . import isofactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def boot_root(settings, tmp_path):
    settings.PUREBOOT_BOOT_ROOT = tmp_path / "boot"
    return settings.PUREBOOT_BOOT_ROOT


def run(*args: str) -> str:
    out = StringIO()
    call_command("import_iso", *args, stdout=out)
    return out.getvalue()


def test_a_windows_iso_brings_its_install_image_and_editions(tmp_path, boot_root):
    built = isofactory.windows(tmp_path / "win.iso", build="22621")
    out = run(str(built.path))
    image = BootImage.objects.get(name="windows-22621-x86_64")
    assert image.family == "windows"
    install = image.files["install_wim"]
    assert install["name"] == "install.wim"
    data = built.payloads["install_wim"]
    assert install["sha256"] == hashlib.sha256(data).hexdigest()
    assert (boot_root / image.name / "install.wim").read_bytes() == data
    assert [(i["index"], i["name"], i["edition_id"], i["arch"]) for i in install["images"]] == [
        (1, "Windows 11 Home", "Core", "amd64"),
        (2, "Windows 11 Education", "Education", "amd64"),
        (3, "Windows 11 Pro", "Professional", "amd64"),
    ]
    assert "edition 3: Windows 11 Pro" in out
    for role in ("bootmgr", "bootmgr_efi", "bcd", "boot_sdi", "boot_wim"):
        assert (boot_root / image.name / image.files[role]["name"]).is_file()


def test_an_install_esd_is_read_the_same_way(tmp_path, boot_root):
    esd = tmp_path / "install.esd"
    wim_bytes = isofactory.real_wim(tmp_path / "src.wim", editions=("Windows 11 Pro",))
    (tmp_path / "src2.wim").write_bytes(wim_bytes)
    # An ESD is a WIM compressed with LZMS (solid): wimlib writes one as Microsoft does.
    subprocess.run(
        ["wimlib-imagex", "export", str(tmp_path / "src2.wim"), "all", str(esd), "--solid"],
        check=True,
        capture_output=True,
    )
    built = isofactory.windows(
        tmp_path / "win.iso", install=esd.read_bytes(), install_name="install.esd"
    )
    run(str(built.path), "--name", "win-esd")
    install = BootImage.objects.get(name="win-esd").files["install_wim"]
    assert install["name"] == "install.esd"
    assert [i["name"] for i in install["images"]] == ["Windows 11 Pro"]


def test_winpe_only_media_cannot_install_windows(tmp_path, boot_root):
    built = isofactory.windows(tmp_path / "winpe.iso", install=b"")
    with pytest.raises(CommandError, match="neither /sources/install.wim nor"):
        run(str(built.path))
    assert not BootImage.objects.exists()


@pytest.mark.parametrize(
    "content,message",
    [
        (b"MSWIM\0\0\0" + b"\0" * 200, "is not a readable WIM"),
        (b"this is not a wim at all\n" * 50, "is not a readable WIM"),
    ],
)
def test_a_broken_install_image_is_a_clear_error_and_nothing_is_kept(
    tmp_path, boot_root, content, message
):
    built = isofactory.windows(tmp_path / "bad.iso", install=content)
    with pytest.raises(CommandError, match=message):
        run(str(built.path))
    assert not BootImage.objects.exists()
    assert not [p for p in boot_root.iterdir() if not p.name.startswith(".")]
