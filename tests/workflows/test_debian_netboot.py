"""A Debian network install that really installs: the netboot flavour of the installer.

The initrd of a Debian netinst or DVD ISO is debian-installer's CD flavour:
netbooted, it stops at "No common CD-ROM drive was detected" (Debian bug
724931). ``manage.py import_iso`` takes the netboot flavour from Debian's
netboot.tar.gz (built here with the real member layout by
tests/workflows/netbootfactory.py) or mini.iso, and saving a ``debian_preseed``
workflow that names the CD flavour is refused.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import tarfile
import threading
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import make_user
from workflows.isoimport import (
    FileTooLarge,
    InvalidIso,
    IsoImportError,
    UnrecognisedIso,
    extract,
    netboot,
    recognise,
)
from workflows.models import BootImage, Workflow

from . import isofactory, netbootfactory
from .netbootfactory import CHR, FILE, LINK, Member

pytestmark = pytest.mark.django_db

DI = "./debian-installer/amd64"


@pytest.fixture(autouse=True)
def boot_root(settings, tmp_path):
    settings.PUREBOOT_BOOT_ROOT = tmp_path / "boot"
    return settings.PUREBOOT_BOOT_ROOT


def _run(*args: str) -> str:
    out = StringIO()
    call_command("import_iso", *args, stdout=out)
    return out.getvalue()


# --------------------------------------------------------------------------- importing


@pytest.mark.parametrize("debarch, arch", [("amd64", "x86_64"), ("arm64", "aarch64")])
def test_import_netboot_tar_gz(tmp_path, boot_root, debarch, arch):
    built = netbootfactory.debian_netboot(tmp_path / "netboot.tar.gz", debarch)
    out = _run(str(built.path))
    assert f"imported debian 12 ({arch}, netboot installer) as debian-12-netboot-{debarch}" in out
    image = BootImage.objects.get()
    assert (image.name, image.family, image.version, image.arch, image.volume_id) == (
        f"debian-12-netboot-{debarch}",
        "debian",
        "12",
        arch,
        "",
    )
    assert image.source == str(built.path)
    # Only the kernel and the initrd, under the role table's names, never the archive's.
    assert image.files == {
        role: {
            "name": name,
            "sha256": built.sha256(role),
            "size": len(built.payloads[role]),
            "from": f"debian-installer/{debarch}/{member}",
            "flavour": "netboot",
        }
        for role, name, member in (
            ("kernel", "vmlinuz", "linux"),
            ("initrd", "initrd", "initrd.gz"),
        )
    }
    folder = boot_root / image.name
    assert sorted(p.name for p in folder.iterdir()) == ["initrd", "vmlinuz"]
    for role, meta in image.files.items():
        body = (folder / meta["name"]).read_bytes()
        assert body == built.payloads[role]
        assert hashlib.sha256(body).hexdigest() == meta["sha256"]
    assert [p.name for p in boot_root.iterdir()] == [image.name]  # no leftovers


def test_the_real_layouts_links_and_version_info_are_read_as_debian_writes_them(tmp_path):
    built = netbootfactory.debian_netboot(tmp_path / "netboot.tar.gz")
    with tarfile.open(built.path) as tar:
        names = tar.getnames()
        links = {m.name: m.linkname for m in tar.getmembers() if m.issym()}
    assert names[0] == "." and names[-1] == "./version.info"  # find . | sort
    assert links["./pxelinux.0"] == "debian-installer/amd64/pxelinux.0"
    assert f"{DI}/grubx64.efi" in names and f"{DI}/boot-screens/syslinux.cfg" in names
    info = recognise(built.path)
    assert info.container == "tar" and info.keeps_iso is False
    assert info.details["codename"] == "bookworm"
    assert info.details["build"] == "20230607+deb12u10"
    assert info.details["flavour"] == "netboot"


def test_a_release_without_a_number_yet_is_named_by_its_codename(tmp_path):
    entries = netbootfactory.members()
    entries[-1] = Member("./version.info", b"Debian version:  trixie\nInstaller build: 2025\n")
    info = recognise(netbootfactory.write(tmp_path / "daily.tar.gz", entries))
    assert (info.name, info.version) == ("debian-trixie-netboot-amd64", "trixie")


class _Files(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    built = netbootfactory.debian_netboot(tmp_path / "netboot.tar.gz")
    _Files.body = built.path.read_bytes()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/debian/dists/bookworm/netboot.tar.gz"
    yield url, hashlib.sha256(_Files.body).hexdigest(), built
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_import_from_a_url_with_its_sha256_as_for_an_iso(served, boot_root):
    url, sha, built = served
    with pytest.raises(CommandError, match="--sha256"):
        _run(url)
    with pytest.raises(CommandError, match="SHA-256 mismatch"):
        _run(url, "--sha256", "0" * 64)
    assert not BootImage.objects.exists() and not list(boot_root.iterdir())
    _run(url, "--sha256", sha.upper())
    image = BootImage.objects.get(name="debian-12-netboot-amd64")
    assert image.source == url
    assert image.files["initrd"]["sha256"] == built.sha256("initrd")
    assert [p.name for p in boot_root.iterdir()] == [image.name]


# --------------------------------------------------------------------------- hostile archives


def _replace(entries: list[Member], name: str, *new: Member) -> list[Member]:
    index = next(i for i, e in enumerate(entries) if e.name == name)
    return entries[:index] + list(new) + entries[index + 1 :]


def _hostile(kind: str) -> bytes:
    """The bytes of a hostile (or merely wrong) archive of kind ``kind``."""
    entries = netbootfactory.members()
    valid = gzip.compress(netbootfactory.tar_bytes(entries), mtime=0)
    kernel = f"{DI}/linux"
    variants = {
        "dotdot": entries[:3] + [Member(f"{DI}/../../../../etc/cron.d/evil", b"* * * * * id\n")],
        "absolute": entries[:3] + [Member("/etc/cron.d/evil", b"* * * * * id\n")],
        "symlink kernel": _replace(
            entries, kernel, Member(kernel, type=LINK, linkname="/etc/shadow")
        ),
        "hardlink kernel": _replace(
            entries, kernel, Member(kernel, type=tarfile.LNKTYPE, linkname="./version.info")
        ),
        "device": entries[:3] + [Member(f"{DI}/console", type=CHR)] + entries[3:],
        "fifo": entries[:3] + [Member(f"{DI}/pipe", type=tarfile.FIFOTYPE)] + entries[3:],
        "oversize": _replace(entries, kernel, Member(kernel, b"\x7fELF", FILE, size=5 * 1024**3)),
        "twice": _replace(entries, kernel, Member(kernel, b"one"), Member(kernel, b"two")),
        "not netboot": [Member("./README", b"hello\n"), Member("./data/x.bin", b"x" * 100)],
        "no version.info": entries[:-1],
        "no initrd": [e for e in entries if not e.name.endswith("initrd.gz")],
        "i386": [
            Member(e.name.replace("amd64", "i386"), e.data, e.type, e.linkname) for e in entries
        ],
        "no version": entries[:-1] + [Member("./version.info", b"Installer build: 1\n")],
    }
    if kind in variants:
        return gzip.compress(netbootfactory.tar_bytes(variants[kind]), mtime=0)
    return {
        "truncated gzip": valid[: len(valid) // 2],
        "gzip trailer cut": valid[:-4],
        "corrupt gzip": valid[:100] + bytes([valid[100] ^ 0xFF]) + valid[101:],
        "uncompressed tar": netbootfactory.tar_bytes(entries),
        "gzip, not tar": gzip.compress(b"just some text\n" * 100),
        "empty gzip": gzip.compress(b""),
    }[kind]


HOSTILE = {
    "dotdot": r"climbs out of the archive \(\.\.\)",
    "absolute": "absolute",
    "symlink kernel": "linux is a symbolic link .*'/etc/shadow'.*not a regular file",
    "hardlink kernel": "linux is a hard link",
    "device": "is a device or FIFO",
    "fifo": "is a device or FIFO",
    "oversize": "over the limit",
    "twice": "appears twice",
    "not netboot": "not Debian's netboot.tar.gz: looked for version.info",
    "no version.info": "has no version.info",
    "no initrd": "has no debian-installer/amd64/initrd.gz",
    "i386": "architecture 'i386'",
    "no version": "names no Debian version",
    "truncated gzip": "truncated",
    "gzip trailer cut": "truncated",
    "corrupt gzip": "netboot.tar.gz",
    "uncompressed tar": "uncompressed tar archive",
    "gzip, not tar": "not a gzip-compressed tar archive",
    "empty gzip": "not a gzip-compressed tar archive",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_or_wrong_archives_are_refused_and_leave_nothing(tmp_path, boot_root, kind):
    path = tmp_path / "netboot.tar.gz"
    path.write_bytes(_hostile(kind))
    with pytest.raises(CommandError, match=HOSTILE[kind]) as refused:
        _run(str(path))
    assert str(refused.value).startswith(f"{path}: ")
    assert not BootImage.objects.exists()
    assert not list(boot_root.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boot", "netboot.tar.gz"]


def test_a_boot_file_over_the_limit_and_an_archive_that_unpacks_too_far(tmp_path, monkeypatch):
    built = netbootfactory.debian_netboot(tmp_path / "netboot.tar.gz")
    with pytest.raises(FileTooLarge, match="initrd.gz is 15000 bytes, over the limit of 10000"):
        recognise(built.path, max_file_bytes=10_000)
    # A gzip bomb: a member nobody asked for, far larger than the archive. The bound
    # is twice max_file_bytes (the kernel and the initrd) plus what the rest may take.
    monkeypatch.setattr(netboot, "_OTHER_MEMBERS_BYTES", 100_000)
    recognise(built.path, max_file_bytes=20_000)
    bomb = netbootfactory.members()
    bomb.insert(3, Member(f"{DI}/zeros", b"\0" * 500_000))
    path = netbootfactory.write(tmp_path / "bomb.tar.gz", bomb)
    assert path.stat().st_size < 100_000  # the zeros compress to almost nothing
    with pytest.raises(FileTooLarge, match="unpacks to more than 140000 bytes"):
        recognise(path, max_file_bytes=20_000)


def test_extract_refuses_an_archive_replaced_since_recognise(tmp_path):
    path = tmp_path / "netboot.tar.gz"
    info = recognise(netbootfactory.debian_netboot(path).path)
    entries = _replace(
        netbootfactory.members(), f"{DI}/linux", Member(f"{DI}/linux", b"another kernel")
    )
    netbootfactory.write(path, entries)
    out = tmp_path / "out"
    with pytest.raises(InvalidIso, match="linux is 14 bytes .* expected 7000 bytes; was the"):
        extract(path, info, out)
    # initrd.gz comes before linux in the archive: it stays, as with an ISO; no partial file.
    assert sorted(p.name for p in out.iterdir()) == ["initrd"]


FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def valid_tar_gz(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("netboot") / "netboot.tar.gz"
    return netbootfactory.debian_netboot(path).path.read_bytes()


@FUZZ
@given(fraction=st.floats(min_value=0, max_value=1), edits=st.lists(st.integers(0, 2**20)))
def test_truncated_or_corrupted_archives_only_raise_our_errors(
    valid_tar_gz, tmp_path, fraction, edits
):
    data = bytearray(valid_tar_gz[: max(3, int(len(valid_tar_gz) * fraction))])
    for edit in edits:
        data[2 + edit % (len(data) - 2)] ^= 1 + edit % 255  # keep the gzip magic
    path = tmp_path / "candidate.tar.gz"
    path.write_bytes(bytes(data))
    try:
        info = recognise(path)
    except IsoImportError:
        return
    extraction = extract(path, info, tmp_path / "out")
    assert set(extraction.sha256) == {"kernel", "initrd"}


# --------------------------------------------------------------------------- mini.iso


def _mini_iso(dest: Path, info: str) -> isofactory.BuiltIso:
    files = {
        "/.disk/info": info.encode(),
        "/linux": isofactory.payload("mini kernel", 7000),
        "/initrd.gz": isofactory.payload("mini initrd", 15000),
        "/isolinux.bin": isofactory.payload("isolinux", 100),
        "/isolinux.cfg": b"include menu.cfg\n",
        "/boot/grub/grub.cfg": b"linux /linux\ninitrd /initrd.gz\n",
    }
    isofactory.build_iso(dest, files, vol_ident="ISOIMAGE")
    return isofactory.BuiltIso(dest, {"kernel": files["/linux"], "initrd": files["/initrd.gz"]})


def test_import_debian_mini_iso(tmp_path, boot_root):
    built = _mini_iso(
        tmp_path / "mini.iso",
        "Debian GNU/Linux 12 (bookworm) amd64 - netboot mini.iso 20230607+deb12u10",
    )
    _run(str(built.path))
    image = BootImage.objects.get(name="debian-12-mini-amd64")
    assert (image.family, image.version, image.arch) == ("debian", "12", "x86_64")
    assert image.files["kernel"]["from"] == "/linux"
    assert {meta["flavour"] for meta in image.files.values()} == {"netboot"}
    assert image.files["initrd"]["sha256"] == built.sha256("initrd")


def test_the_mini_iso_layout_without_debians_label_is_not_guessed(tmp_path):
    built = _mini_iso(tmp_path / "mini.iso", "Ubuntu 18.04 LTS amd64 - netboot mini.iso")
    with pytest.raises(UnrecognisedIso, match="netboot mini.iso"):
        recognise(built.path)


# --------------------------------------------------------------------------- the CD flavour at save

DEBIAN_NET = """\
name: debian-net
arch: [{arch}]
tasks:
  - type: pxe_boot
    boot_image: {image}
  - type: debian_preseed
    suite: bookworm
    username: ops
    packages: [openssh-server]
"""


@pytest.fixture
def admin_client(api):
    return api(make_user("Admin"))


def _save(client, image: str, arch: str = "x86_64"):
    doc = DEBIAN_NET.format(image=image, arch=arch)
    return client.post("/api/v1/workflows", {"content": doc}, format="json")


@pytest.mark.parametrize(
    "debarch, arch, cd_dir",
    [("amd64", "x86_64", "install.amd"), ("arm64", "aarch64", "install.a64")],
)
def test_debians_cd_installer_is_refused_for_a_network_install(
    admin_client, tmp_path, debarch, arch, cd_dir
):
    built = isofactory.debian_netinst(tmp_path / "netinst.iso", version="12.10.0", arch=debarch)
    _run(str(built.path))
    image = BootImage.objects.get()
    assert image.files["initrd"]["flavour"] == "cd"
    assert image.files["initrd"]["from"] == f"/{cd_dir}/initrd.gz"
    resp = _save(admin_client, image.name, arch)
    assert resp.status_code == 400, resp.content
    error = resp.json()["error"]
    assert error["path"] == "tasks[0].boot_image"
    assert error["message"].startswith(
        f"boot image '{image.name}' is Debian's CD installer ({cd_dir}/initrd.gz), which "
        "cannot install over the network"
    )
    assert (
        "import Debian's netboot.tar.gz with manage.py import_iso https://deb.debian.org/debian/"
        f"dists/bookworm/main/installer-{debarch}/current/images/netboot/netboot.tar.gz --sha256"
    ) in error["message"]
    assert not Workflow.objects.exists()

    netboot = netbootfactory.debian_netboot(tmp_path / "netboot.tar.gz", debarch)
    _run(str(netboot.path))
    resp = _save(admin_client, f"debian-12-netboot-{debarch}", arch)
    assert resp.status_code == 201, resp.content
    assert not [w for w in resp.json()["warnings"] if "not checked" not in w]


def test_a_cd_image_imported_before_the_flavour_was_recorded_is_refused_too(admin_client):
    """Rows import_iso wrote before: no "flavour", but a source and a volume id. It then
    recognised Debian media only by the CD layout (install.amd/, install.a64/)."""
    files = {r: {"name": n, "sha256": "0" * 64, "size": 1} for r, n in (("kernel", "vmlinuz"),)}
    files["initrd"] = {"name": "initrd", "sha256": "0" * 64, "size": 1}
    for name, source, volume_id in (
        ("old-netinst", "/srv/iso/debian-12.5.0-amd64-netinst.iso", "Debian 12.5.0 amd64 n"),
        ("old-url", "https://cdimage.debian.org/debian-12.5.0-amd64-DVD-1.iso", ""),
    ):
        BootImage.objects.create(
            name=name, family="debian", version="12.5.0", arch="x86_64",
            files=files, source=source, volume_id=volume_id,
        )  # fmt: skip
        resp = _save(admin_client, name)
        assert resp.status_code == 400, resp.content
        assert "(install.amd/initrd.gz)" in resp.json()["error"]["message"]
    # A row nothing says anything about (made by hand) is not judged.
    BootImage.objects.create(name="by-hand", family="debian", arch="x86_64", files=files)
    assert _save(admin_client, "by-hand").status_code == 201
