"""workflows.isoimport: recognising installer ISOs, extracting boot files, downloading.

The ISOs are real ones, built by tests/workflows/isofactory.py with pycdlib
in the directory layouts of the real media. download() talks to a real
http.server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import pycdlib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.workflows import isofactory
from workflows.isoimport import (
    DEFAULT_MAX_FILE_BYTES,
    BootFile,
    ChecksumMismatch,
    DownloadError,
    DownloadTooLarge,
    FileTooLarge,
    InvalidIso,
    IsoInfo,
    UnrecognisedIso,
    download,
    extract,
    recognise,
)

EXPECTED_NAMES = {
    "kernel": "vmlinuz",
    "initrd": "initrd",
    "ucode_intel": "intel-ucode.img",
    "ucode_amd": "amd-ucode.img",
    "bootmgr": "bootmgr",
    "bcd": "BCD",
    "boot_sdi": "boot.sdi",
    "boot_wim": "boot.wim",
    "install_wim": "install.wim",
    "install_esd": "install.esd",
    # Where archiso and Anaconda's dracut look for them below the URL they are given.
    "rootfs": "arch/x86_64/airootfs.sfs",
    "rootfs_sha512": "arch/x86_64/airootfs.sha512",
    "rootfs_sig": "arch/x86_64/airootfs.sfs.sig",
    "rootfs_cms_sig": "arch/x86_64/airootfs.sfs.cms.sig",
    "stage2": "images/install.img",
    "treeinfo": ".treeinfo",
}


def assert_extracts(built: isofactory.BuiltIso, info: IsoInfo, dest: Path) -> None:
    """extract() writes exactly the expected roles, byte-identical, with the right SHA-256."""
    result = extract(built.path, info, dest)
    # The one file extract() writes itself: the .treeinfo naming an Anaconda runtime.
    written = {"treeinfo"} if "stage2" in built.payloads else set()
    assert set(result.paths) == set(built.payloads) | written
    assert set(built.payloads) == {f.role for f in info.files}
    for role, data in built.payloads.items():
        path = result.paths[role]
        if role != "bootmgr_efi":
            assert path.relative_to(dest).as_posix() == EXPECTED_NAMES[role]
        else:
            assert path.parent == dest
        assert path.read_bytes() == data
        assert result.sha256[role] == built.sha256(role)
    if written:
        treeinfo = result.paths["treeinfo"].read_text()
        assert "[stage2]\nmainimage = images/install.img\n" in treeinfo
        assert result.sha256["treeinfo"] == hashlib.sha256(treeinfo.encode()).hexdigest()
    # Nothing but the role-named files: no temporaries left behind.
    on_disk = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert on_disk == sorted(p.relative_to(dest).as_posix() for p in result.paths.values())


def only_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --------------------------------------------------------------------------- families


def test_ubuntu_live_server(tmp_path):
    built = isofactory.ubuntu_live_server(tmp_path / "ubuntu.iso")
    info = recognise(built.path)
    assert (info.family, info.version, info.arch) == ("ubuntu", "24.04", "x86_64")
    assert info.name == "ubuntu-24.04-live-server-amd64"
    assert info.volume_id == "Ubuntu-Server 24.04 LTS amd64"
    assert info.details["codename"] == "Noble Numbat"
    assert info.details["namespace"] == "rr"
    assert [(f.role, f.iso_path) for f in info.files] == [
        ("kernel", "/casper/vmlinuz"),
        ("initrd", "/casper/initrd"),
    ]
    assert_extracts(built, info, tmp_path / "out")


@pytest.mark.parametrize(
    "debarch, arch, subdir",
    [("amd64", "x86_64", "install.amd"), ("arm64", "aarch64", "install.a64")],
)
def test_debian_netinst(tmp_path, debarch, arch, subdir):
    built = isofactory.debian_netinst(tmp_path / "debian.iso", arch=debarch)
    info = recognise(built.path)
    assert (info.family, info.version, info.arch) == ("debian", "12.5.0", arch)
    assert info.name == f"debian-12.5.0-{debarch}-netinst"
    assert info.details["codename"] == "Bookworm"
    assert {f.iso_path for f in info.files} == {f"/{subdir}/vmlinuz", f"/{subdir}/initrd.gz"}
    assert_extracts(built, info, tmp_path / "out")


@pytest.mark.parametrize(
    "label, short, version, arch, variant, vol, family, name",
    [
        (
            "Fedora",
            "Fedora",
            "40",
            "x86_64",
            "Server",
            "Fedora-S-dvd-x86_64-40",
            "fedora",
            "fedora-40-x86_64-server",
        ),
        (
            "Rocky Linux",
            "Rocky",
            "9.3",
            "x86_64",
            "Minimal",
            "Rocky-9-3-x86_64-dvd",
            "rocky",
            "rocky-9.3-x86_64-minimal",
        ),
        (
            "AlmaLinux",
            "AlmaLinux",
            "9.3",
            "x86_64",
            "BaseOS",
            "AlmaLinux-9-3-x86_64-dvd",
            "alma",
            "alma-9.3-x86_64-baseos",
        ),
        (
            "Rocky Linux",
            "Rocky",
            "9.3",
            "aarch64",
            "Minimal",
            "Rocky-9-3-aarch64-dvd",
            "rocky",
            "rocky-9.3-aarch64-minimal",
        ),
    ],
)
def test_treeinfo_families(tmp_path, label, short, version, arch, variant, vol, family, name):
    built = isofactory.treeinfo_tree(
        tmp_path / "tree.iso",
        family=label,
        short=short,
        version=version,
        arch=arch,
        variant=variant,
        vol_ident=vol,
    )
    info = recognise(built.path)
    assert (info.family, info.version, info.arch, info.name) == (family, version, arch, name)
    assert info.volume_id == vol
    assert info.details["stage2"] == "images/install.img"
    assert_extracts(built, info, tmp_path / "out")


def test_treeinfo_paths_win_over_the_pxeboot_default(tmp_path):
    built = isofactory.treeinfo_tree(
        tmp_path / "tree.iso",
        family="Fedora",
        short="Fedora",
        version="41",
        kernel="isolinux/vmlinuz",
        initrd="isolinux/initrd.img",
    )
    info = recognise(built.path)
    assert {f.iso_path for f in info.files} == {
        "/isolinux/vmlinuz",
        "/isolinux/initrd.img",
        "/images/install.img",  # the runtime image .treeinfo's [stage2] names
    }
    assert_extracts(built, info, tmp_path / "out")


def test_treeinfo_path_escaping_the_tree_stays_inside_the_iso(tmp_path):
    built = isofactory.treeinfo_tree(
        tmp_path / "tree.iso",
        family="Rocky Linux",
        short="Rocky",
        version="9.4",
        kernel="../../../../../etc/passwd",
        initrd="../../" + str(tmp_path / "evil"),
    )
    info = recognise(built.path)
    # "../" is resolved inside the ISO: nothing there, so the pxeboot default is used.
    assert {f.iso_path for f in info.files} == {
        "/images/pxeboot/vmlinuz",
        "/images/pxeboot/initrd.img",
        "/images/install.img",
    }
    assert_extracts(built, info, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_archlinux(tmp_path):
    built = isofactory.archlinux(tmp_path / "arch.iso")
    info = recognise(built.path)
    assert (info.family, info.version, info.arch) == ("arch", "2024.11.01", "x86_64")
    assert info.name == "archlinux-2024.11.01-x86_64"
    assert info.volume_id == "ARCH_202411"
    assert info.details["rootfs"] == "/arch/x86_64/airootfs.sfs"
    assert_extracts(built, info, tmp_path / "out")


@pytest.mark.parametrize("winarch, arch", [("amd64", "x86_64"), ("arm64", "aarch64")])
def test_windows_udf(tmp_path, winarch, arch):
    built = isofactory.windows(tmp_path / "win.iso", arch=winarch)
    # As on Microsoft's media, the ISO 9660 tree shows only a README: the
    # boot files are reachable through their UDF names alone.
    iso = pycdlib.PyCdlib()
    iso.open(str(built.path))
    names = {c.file_identifier() for c in iso.list_children(iso_path="/")}
    iso.close()
    assert names == {b".", b"..", b"README.TXT;1"}

    info = recognise(built.path)
    assert (info.family, info.version, info.arch) == ("windows", "26100", arch)
    assert info.name == f"windows-26100-{arch}"
    assert info.details["namespace"] == "udf"
    # Case-insensitive lookup found the mixed-case real names.
    by_role = {f.role: f.iso_path for f in info.files}
    assert by_role["bcd"] == "/Boot/BCD"
    assert by_role["boot_wim"] == "/sources/BOOT.WIM"
    assert_extracts(built, info, tmp_path / "out")
    efi_name = {"x86_64": "bootx64.efi", "aarch64": "bootaa64.efi"}[arch]
    assert (tmp_path / "out" / efi_name).read_bytes() == built.payloads["bootmgr_efi"]


def test_windows_plain_iso9660_names(tmp_path):
    built = isofactory.windows(tmp_path / "win.iso", udf=False)
    info = recognise(built.path)
    assert (info.family, info.arch, info.details["namespace"]) == ("windows", "x86_64", "iso9660")
    assert_extracts(built, info, tmp_path / "out")


def test_joliet_names_when_there_is_no_rock_ridge(tmp_path):
    path = tmp_path / "ubuntu.iso"
    files = {
        "/casper/vmlinuz": isofactory.payload("k", 3000),
        "/casper/initrd": isofactory.payload("i", 5000),
    }
    isofactory.build_iso(path, files, vol_ident="Ubuntu 24.04.1 LTS arm64", rock_ridge=False)
    info = recognise(path)
    assert (info.family, info.version, info.arch) == ("ubuntu", "24.04.1", "aarch64")
    assert info.name == "ubuntu-24.04.1-desktop-arm64"
    assert info.details["namespace"] == "joliet"


# --------------------------------------------------------------------------- refusals


def test_unrecognised_layout_says_what_it_looked_for(tmp_path):
    built = isofactory.unrecognised(tmp_path / "backup.iso")
    with pytest.raises(UnrecognisedIso) as err:
        recognise(built.path)
    message = str(err.value)
    assert "BACKUP_2024" in message
    for marker in (
        "/sources/boot.wim",
        "/.treeinfo",
        "/casper/vmlinuz",
        "/install.amd/",
        "/arch/boot/x86_64/vmlinuz-linux",
    ):
        assert marker in message


def test_casper_layout_of_another_distribution_is_unrecognised(tmp_path):
    path = tmp_path / "mint.iso"
    files = {
        "/.disk/info": b'Linux Mint 21.3 "Virginia" - Release amd64 20240114',
        "/casper/vmlinuz": b"k" * 100,
        "/casper/initrd.lz": b"i" * 100,
    }
    isofactory.build_iso(path, files, vol_ident="Linux Mint 21.3 Cinnamon 64-bit")
    with pytest.raises(UnrecognisedIso, match="no Ubuntu release"):
        recognise(path)


def test_treeinfo_of_an_unsupported_family(tmp_path):
    built = isofactory.treeinfo_tree(
        tmp_path / "c.iso", family="CentOS Stream", short="CentOS", version="9"
    )
    with pytest.raises(UnrecognisedIso, match="CentOS Stream.*supported: Fedora"):
        recognise(built.path)


def test_unsupported_architecture(tmp_path):
    built = isofactory.treeinfo_tree(
        tmp_path / "p.iso", family="Fedora", short="Fedora", version="40", arch="ppc64le"
    )
    with pytest.raises(UnrecognisedIso, match="ppc64le.*supported: x86_64, aarch64"):
        recognise(built.path)


def test_windows_media_without_bcd(tmp_path):
    path = tmp_path / "w.iso"
    files = {"/sources/boot.wim": b"w" * 100, "/bootmgr": b"b" * 100}
    isofactory.build_iso(path, files, vol_ident="CCCOMA_X64FRE", udf=True)
    with pytest.raises(UnrecognisedIso, match="Windows media but has none of /boot/bcd"):
        recognise(path)


def test_text_file_is_invalid(tmp_path):
    path = tmp_path / "notes.iso"
    path.write_text("not an ISO at all\n" * 5000)
    with pytest.raises(InvalidIso, match="not a readable ISO 9660 image"):
        recognise(path)


def test_empty_file_is_invalid(tmp_path):
    path = tmp_path / "empty.iso"
    path.write_bytes(b"")
    with pytest.raises(InvalidIso, match="0 bytes"):
        recognise(path)


def test_truncated_iso_is_invalid(tmp_path):
    built = isofactory.ubuntu_live_server(tmp_path / "ubuntu.iso")
    cut = tmp_path / "cut.iso"
    cut.write_bytes(built.path.read_bytes()[: 40 * 1024])
    with pytest.raises(InvalidIso):
        recognise(cut)


def test_truncated_inside_file_data_is_invalid(tmp_path):
    built = isofactory.archlinux(tmp_path / "arch.iso")
    data = built.path.read_bytes()
    cut = tmp_path / "cut.iso"
    cut.write_bytes(data[:-2048])
    with pytest.raises(InvalidIso, match="truncated"):
        recognise(cut)


def test_missing_file_and_directory_are_invalid(tmp_path):
    with pytest.raises(InvalidIso, match="cannot read"):
        recognise(tmp_path / "nowhere.iso")
    with pytest.raises(InvalidIso, match="not a regular file"):
        recognise(tmp_path)


def test_boot_file_over_the_size_limit(tmp_path):
    built = isofactory.ubuntu_live_server(tmp_path / "ubuntu.iso")
    with pytest.raises(FileTooLarge, match="/casper/initrd .*21000 bytes, over the limit of 10000"):
        recognise(built.path, max_file_bytes=10_000)
    assert DEFAULT_MAX_FILE_BYTES == 4 * 1024**3


# --------------------------------------------------------------------------- robustness


@pytest.fixture(scope="module")
def valid_iso(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("valid") / "debian.iso"
    return isofactory.debian_netinst(path).path.read_bytes()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "candidate.iso"


def recognise_or_refuse(path: Path) -> None:
    try:
        recognise(path)
    except (InvalidIso, UnrecognisedIso):
        pass


FUZZ = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(data=st.binary(max_size=64 * 1024), pad=st.booleans())
def test_random_bytes_only_raise_our_errors(scratch, data, pad):
    # Padding puts the random bytes where the volume descriptors are read.
    scratch.write_bytes((b"\0" * 32768 if pad else b"") + data)
    recognise_or_refuse(scratch)


@FUZZ
@given(fraction=st.floats(min_value=0, max_value=1))
def test_random_truncation_only_raises_our_errors(valid_iso, scratch, fraction):
    scratch.write_bytes(valid_iso[: int(len(valid_iso) * fraction)])
    recognise_or_refuse(scratch)


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(16 * 2048, 40 * 2048 - 1), st.integers(0, 255)),
        min_size=1,
        max_size=16,
    )
)
def test_corrupted_metadata_only_raises_our_errors(valid_iso, scratch, edits):
    # The volume descriptors, path tables, directory records, Rock Ridge
    # entries and the small text files all live in these sectors.
    data = bytearray(valid_iso)
    for offset, value in edits:
        if offset < len(data):
            data[offset] = value
    scratch.write_bytes(bytes(data))
    recognise_or_refuse(scratch)


# --------------------------------------------------------------------------- extract guard rails


def test_extract_refuses_an_unknown_role(tmp_path):
    built = isofactory.archlinux(tmp_path / "arch.iso")
    info = recognise(built.path)
    forged = IsoInfo(
        **{**info.__dict__, "files": (BootFile("../../escape", info.files[0].iso_path, 6000),)}
    )
    with pytest.raises(ValueError, match="no file name for boot file role"):
        extract(built.path, forged, tmp_path / "out")
    assert only_files(tmp_path / "out") == []
    assert not (tmp_path / "escape").exists()


def test_extract_honours_the_size_limit(tmp_path):
    built = isofactory.ubuntu_live_server(tmp_path / "ubuntu.iso")
    info = recognise(built.path)
    with pytest.raises(FileTooLarge):
        extract(built.path, info, tmp_path / "out", max_file_bytes=10_000)
    assert only_files(tmp_path / "out") == []


def test_extract_refuses_an_iso_that_changed_since_recognise(tmp_path):
    built = isofactory.ubuntu_live_server(tmp_path / "ubuntu.iso")
    info = recognise(built.path)
    isofactory.debian_netinst(built.path)  # replaced in place by another ISO
    with pytest.raises(InvalidIso, match="/casper/vmlinuz is missing.*was the ISO replaced"):
        extract(built.path, info, tmp_path / "out")
    assert only_files(tmp_path / "out") == []


def test_extract_size_mismatch_keeps_the_existing_file(tmp_path):
    built = isofactory.windows(tmp_path / "win.iso")
    info = recognise(built.path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "boot.wim").write_bytes(b"previous good copy")
    # An IsoInfo that disagrees with the ISO (stale, or forged) is refused
    # before anything is written; the earlier copy stays as it was.
    wim = next(f for f in info.files if f.role == "boot_wim")
    bigger = BootFile(wim.role, wim.iso_path, wim.size + 5000)
    lying = IsoInfo(**{**info.__dict__, "files": (bigger,)})
    with pytest.raises(InvalidIso, match="expected 38000 bytes"):
        extract(built.path, lying, out)
    assert only_files(out) == ["boot.wim"]
    assert (out / "boot.wim").read_bytes() == b"previous good copy"


def test_extract_short_read_leaves_no_partial_file(tmp_path, monkeypatch):
    built = isofactory.archlinux(tmp_path / "arch.iso")
    info = recognise(built.path)
    real = pycdlib.PyCdlib.get_file_from_iso_fp

    def short(self, outfp, **kwargs):
        # pycdlib stops silently at EOF when an ISO is shorter than its
        # directory records claim (utils.copy_data); simulate that here.
        outfp.write(b"partial data")

    monkeypatch.setattr(pycdlib.PyCdlib, "get_file_from_iso_fp", short)
    with pytest.raises(InvalidIso, match="short read: got 12 of 6000 bytes"):
        extract(built.path, info, tmp_path / "out")
    assert only_files(tmp_path / "out") == []
    monkeypatch.setattr(pycdlib.PyCdlib, "get_file_from_iso_fp", real)
    assert_extracts(built, info, tmp_path / "out")


# --------------------------------------------------------------------------- download


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self):  # noqa: N802 - http.server's naming
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        status, headers, body = route
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ISO_BODY = isofactory.payload("downloaded iso", 300_000)
ISO_SHA = hashlib.sha256(ISO_BODY).hexdigest()


@pytest.fixture(scope="module")
def server():
    _Handler.routes = {
        "/good.iso": (200, {"Content-Length": str(len(ISO_BODY))}, ISO_BODY),
        # HTTP/1.0 without Content-Length: the size is known only by reading.
        "/unannounced.iso": (200, {}, ISO_BODY),
        "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
        "/to-ftp": (302, {"Location": "ftp://127.0.0.1/x.iso"}, b""),
        "/to-good": (302, {"Location": "/good.iso"}, b""),
    }
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_download_with_good_checksum(server, tmp_path):
    dest = tmp_path / "isos" / "good.iso"
    got = download(f"{server}/good.iso", dest, ISO_SHA.upper(), max_bytes=10**6, timeout=10)
    assert got == dest
    assert dest.read_bytes() == ISO_BODY
    assert only_files(dest.parent) == ["good.iso"]


def test_download_follows_http_redirects(server, tmp_path):
    dest = tmp_path / "good.iso"
    download(f"{server}/to-good", dest, ISO_SHA, max_bytes=10**6, timeout=10)
    assert dest.read_bytes() == ISO_BODY


def test_download_with_wrong_checksum_keeps_nothing(server, tmp_path):
    dest = tmp_path / "bad.iso"
    with pytest.raises(ChecksumMismatch) as err:
        download(f"{server}/good.iso", dest, "0" * 64, max_bytes=10**6, timeout=10)
    assert err.value.expected == "0" * 64
    assert err.value.actual == ISO_SHA
    assert only_files(tmp_path) == []


def test_download_checksum_mismatch_leaves_an_existing_file_alone(server, tmp_path):
    dest = tmp_path / "kept.iso"
    dest.write_bytes(b"older ISO")
    with pytest.raises(ChecksumMismatch):
        download(f"{server}/good.iso", dest, "f" * 64, max_bytes=10**6, timeout=10)
    assert dest.read_bytes() == b"older ISO"
    assert only_files(tmp_path) == ["kept.iso"]


@pytest.mark.parametrize("route", ["/good.iso", "/unannounced.iso"])
def test_download_over_max_bytes_is_refused(server, tmp_path, route):
    with pytest.raises(DownloadTooLarge, match="limit of 100000"):
        download(f"{server}{route}", tmp_path / "big.iso", ISO_SHA, max_bytes=100_000, timeout=10)
    assert only_files(tmp_path) == []


def test_download_404_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match=r"HTTP 404 Not Found for http://127\.0\.0\.1:\d+/nope"):
        download(f"{server}/nope", tmp_path / "x.iso", ISO_SHA, max_bytes=10**6, timeout=10)
    assert only_files(tmp_path) == []


def test_download_refuses_other_schemes_and_redirects_to_them(server, tmp_path):
    with pytest.raises(DownloadError, match="only http and https"):
        download("file:///etc/passwd", tmp_path / "x.iso", ISO_SHA, max_bytes=10**6, timeout=10)
    # urllib itself refuses file:, our redirect handler refuses ftp: too.
    with pytest.raises(
        DownloadError, match="Redirection to url 'file:///etc/passwd' is not allowed"
    ):
        download(f"{server}/to-file", tmp_path / "x.iso", ISO_SHA, max_bytes=10**6, timeout=10)
    with pytest.raises(DownloadError, match="refusing redirect to non-http"):
        download(f"{server}/to-ftp", tmp_path / "x.iso", ISO_SHA, max_bytes=10**6, timeout=10)
    assert only_files(tmp_path) == []


def test_download_unreachable_host_is_a_clear_error(tmp_path):
    # A loopback port nobody listens on: bind one, note it, close it.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot fetch"):
        download(
            f"http://user:secret@127.0.0.1:{port}/x.iso",
            tmp_path / "x.iso",
            ISO_SHA,
            max_bytes=10**6,
            timeout=5,
        )
    assert only_files(tmp_path) == []


def test_download_redacts_credentials_in_errors(server, tmp_path):
    host = server.removeprefix("http://")
    with pytest.raises(DownloadError) as err:
        download(
            f"http://user:secret@{host}/nope",
            tmp_path / "x.iso",
            ISO_SHA,
            max_bytes=10**6,
            timeout=10,
        )
    assert "secret" not in str(err.value)
    assert "***@127.0.0.1" in str(err.value)


def test_download_rejects_a_malformed_checksum(tmp_path):
    with pytest.raises(ValueError, match="64 hex digits"):
        download("http://127.0.0.1:9/x.iso", tmp_path / "x.iso", "abc", max_bytes=1, timeout=1)
    assert not os.listdir(tmp_path)
