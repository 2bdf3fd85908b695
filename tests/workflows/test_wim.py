"""workflows.wim: reading a WIM's editions and adding drivers, with real wimlib.

WIMs are made with ``wimlib-imagex capture``/``append``; hostile ones (garbage,
entity bombs, oversized XML, duplicate names) are a WimError naming the file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from workflows import wim

from . import isofactory


def wimlib(*args: str) -> str:
    return subprocess.run(
        ["wimlib-imagex", *args], capture_output=True, text=True, check=True
    ).stdout


def boot_wim(tmp_path: Path) -> Path:
    """A two-image WIM whose image 2 is marked bootable, as Microsoft's boot.wim."""
    tree = tmp_path / "pe"
    (tree / "Windows" / "System32").mkdir(parents=True)
    (tree / "Windows" / "System32" / "winpeshl.exe").write_bytes(b"MZ" + b"\0" * 100)
    path = tmp_path / "boot.wim"
    wimlib("capture", str(tree), str(path), "Microsoft Windows PE (amd64)")
    wimlib("append", str(tree), str(path), "Microsoft Windows Setup (amd64)", "--boot")
    return path


def test_images_of_a_real_wim_with_editions_and_arch(tmp_path):
    path = tmp_path / "install.wim"
    isofactory.real_wim(path, editions=("Windows 11 Home", "Windows 11 Pro"), arch="arm64")
    found = wim.images(path)
    assert [(i.index, i.name, i.edition_id, i.arch) for i in found] == [
        (1, "Windows 11 Home", "Core", "arm64"),
        (2, "Windows 11 Pro", "Professional", "arm64"),
    ]
    assert all(i.size > 0 for i in found)
    assert found[0].as_dict().keys() == {
        "index",
        "name",
        "description",
        "edition_id",
        "arch",
        "size",
    }
    assert wim.boot_index(path) == 0


def test_the_boot_index_is_read_from_the_header(tmp_path):
    assert wim.boot_index(boot_wim(tmp_path)) == 2


@pytest.mark.parametrize(
    "content",
    [b"", b"MSWIM\0\0\0" + b"\0" * 200, b"this is not a wim at all\n" * 50],
)
def test_garbage_is_not_a_readable_wim(tmp_path, content):
    path = tmp_path / "install.wim"
    path.write_bytes(content)
    with pytest.raises(wim.WimError, match="install.wim is not a readable WIM"):
        wim.images(path)
    with pytest.raises(wim.WimError, match="install.wim is not a readable WIM"):
        wim.boot_index(path)


def test_a_real_wims_xml_over_the_cap_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "install.wim"
    isofactory.real_wim(path, editions=("Windows 11 Pro",))
    monkeypatch.setattr(wim, "MAX_XML_BYTES", 200)
    with pytest.raises(wim.WimError, match="XML data is over 200 bytes"):
        wim.images(path)


LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE WIM [<!ENTITY a "aaaaaaaaaa">'
    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    '<WIM><IMAGE INDEX="1"><NAME>&b;</NAME></IMAGE></WIM>'
)
EXTERNAL = (
    '<?xml version="1.0"?><!DOCTYPE WIM [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    '<WIM><IMAGE INDEX="1"><NAME>&x;</NAME></IMAGE></WIM>'
)


@pytest.mark.parametrize(
    "xml,message",
    [
        (LAUGHS, "cannot be read"),
        (EXTERNAL, "cannot be read"),
        (
            "<WIM><IMAGE INDEX='1'><NAME>A</NAME></IMAGE><IMAGE INDEX='2'><NAME>A</NAME>"
            "</IMAGE></WIM>",
            "two images share a name",
        ),
        ("<WIM><IMAGE INDEX='x'><NAME>A</NAME></IMAGE></WIM>", "has the index 'x'"),
        # str.isdigit() takes these; int() would raise: the class of a 500 from a WIM.
        ("<WIM><IMAGE INDEX='\u00b2'><NAME>A</NAME></IMAGE></WIM>", "has the index"),
        ("<WIM><IMAGE INDEX='" + "9" * 5000 + "'><NAME>A</NAME></IMAGE></WIM>", "has the index"),
        ("<WIM><IMAGE INDEX='1'></IMAGE></WIM>", "image 1 has no usable name"),
        ("<WIM><IMAGE INDEX='1'><NAME>A\tB</NAME></IMAGE></WIM>", "image 1 has no usable name"),
        ("<WIM><IMAGE INDEX='1'><NAME>" + "A" * 300 + "</NAME></IMAGE></WIM>", "no usable name"),
        ("<WIM></WIM>", "holds no image"),
        ("<WIM>" + "<IMAGE INDEX='1'><NAME>A</NAME></IMAGE>" * 300 + "</WIM>", "300 images"),
        ("<WIM><IMAGE", "cannot be read"),
    ],
)
def test_a_hostile_wims_xml_is_refused_by_name(xml, message):
    raw = b"\xff\xfe" + xml.encode("utf-16-le")
    with pytest.raises(wim.WimError, match=message):
        wim.parse_xml(raw, "hostile.wim")


def test_undecodable_xml_is_refused():
    with pytest.raises(wim.WimError, match="cannot be read"):
        wim.parse_xml(b"\xff\xfe\x00\xd8", "odd.wim")  # a lone UTF-16 surrogate


def test_unknown_arch_and_odd_size_read_as_empty():
    xml = (
        "<WIM><IMAGE INDEX='1'><NAME>A</NAME><TOTALBYTES>lots</TOTALBYTES>"
        "<WINDOWS><ARCH>77</ARCH><EDITIONID>ServerStandard</EDITIONID></WINDOWS></IMAGE></WIM>"
    )
    (image,) = wim.parse_xml(b"\xff\xfe" + xml.encode("utf-16-le"), "x.wim")
    assert (image.arch, image.size, image.edition_id) == ("", 0, "ServerStandard")


def test_inject_drivers_adds_the_folder_in_the_boot_image_only(tmp_path):
    path = boot_wim(tmp_path)
    drivers = tmp_path / "drivers"
    (drivers / "net").mkdir(parents=True)
    (drivers / "net" / "e1000.inf").write_text("[Version]\r\n")
    assert wim.inject_drivers(path, drivers, "optiplex-7010") == 2
    assert "/Drivers/optiplex-7010/net/e1000.inf" in wimlib(
        "dir", str(path), "2", "--path=/Drivers"
    )
    untouched = subprocess.run(
        ["wimlib-imagex", "dir", str(path), "1", "--path=/Drivers"], capture_output=True
    )
    assert untouched.returncode != 0  # image 1 has no /Drivers
    assert [i.name for i in wim.images(path)][1] == "Microsoft Windows Setup (amd64)"


@pytest.mark.parametrize("slug", ["", "../x", "a b", "A'B", "x/y"])
def test_inject_drivers_refuses_folder_names_it_cannot_write(tmp_path, slug):
    with pytest.raises(wim.WimError, match="not a driver folder name"):
        wim.inject_drivers(tmp_path / "boot.wim", tmp_path, slug)


def test_add_folder_refuses_paths_wimlib_cannot_quote(tmp_path):
    path = boot_wim(tmp_path)
    odd = tmp_path / "it's"
    odd.mkdir()
    with pytest.raises(wim.WimError, match="cannot quote"):
        wim.add_folder(path, 1, odd, "/Drivers/x")
    with pytest.raises(wim.WimError, match="not a folder path inside a WIM"):
        wim.add_folder(path, 1, tmp_path, "/Drivers/../x")


def test_inject_drivers_into_garbage_is_a_wim_error(tmp_path):
    path = tmp_path / "boot.wim"
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(wim.WimError, match="boot.wim is not a readable WIM"):
        wim.inject_drivers(path, tmp_path, "x")


def test_missing_wimlib_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(wim.shutil, "which", lambda name: None)
    with pytest.raises(wim.WimError, match=r"wimlib-imagex not found \(Debian package: wimtools\)"):
        wim.images(tmp_path / "x.wim")


def test_wimlib_that_takes_too_long_is_stopped(tmp_path, monkeypatch):
    path = tmp_path / "install.wim"
    isofactory.real_wim(path, editions=("Windows 11 Pro",))
    monkeypatch.setattr(wim, "TIMEOUT_SECONDS", 0)
    with pytest.raises(wim.WimError, match="wimlib took more than 0 s"):
        wim.images(path)


def test_a_size_that_is_no_plain_number_reads_as_unknown():
    xml = (
        "<WIM><IMAGE INDEX='1'><NAME>A</NAME><TOTALBYTES>"
        + "9" * 5000
        + "</TOTALBYTES></IMAGE></WIM>"
    )
    [image] = wim.parse_xml(b"\xff\xfe" + xml.encode("utf-16-le"), "big.wim")
    assert (image.index, image.size) == (1, 0)
