"""Root file system templates: ``manage.py import_rootfs`` / ``remove_rootfs``, and the
``nfs_root`` task type's checks when a workflow is saved."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from nodes.services import SYSTEM
from tests.factories import make_node, make_workflow
from workflows import rootfs_archive
from workflows.definitions import DefinitionError, parse
from workflows.models import RootFilesystem
from workflows.services import save_workflow

KERNEL = b"\x4d\x5a" + b"kernel8" * 100
INITRD = b"\x1f\x8b" + b"initramfs8" * 100


def _info(name: str, kind: bytes = tarfile.REGTYPE, **fields) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = fields.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    info.mtime = fields.pop("mtime", 1_700_000_000)
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def make_archive(path: Path, members: list, fmt: str = "tar.gz") -> Path:
    """Members are (TarInfo, data or None); packed as tar.gz or tar.zst."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    payload = raw.getvalue()
    if fmt == "tar.zst":
        path.write_bytes(zstandard.ZstdCompressor().compress(payload))
    else:
        path.write_bytes(gzip.compress(payload))
    return path


def system_members(*extra) -> list:
    """A small Raspberry Pi OS-like root: Pi boot files, /etc, set-uid sudo, links."""
    d = tarfile.DIRTYPE
    return [
        (_info(".", d), None),
        (_info("boot", d), None),
        (_info("boot/firmware", d), None),
        (_info("boot/firmware/kernel8.img"), KERNEL),
        (_info("boot/firmware/initramfs8"), INITRD),
        (_info("etc", d), None),
        (_info("etc/hostname"), b"template\n"),
        (_info("etc/shadow", mode=0o640, uid=0, gid=42), b"root:*:19000::::::\n"),
        (_info("etc/localtime", tarfile.SYMTYPE, linkname="/usr/share/zoneinfo/UTC"), None),
        (_info("usr", d), None),
        (_info("usr/lib", d), None),
        (_info("usr/bin", d), None),
        (_info("usr/bin/sudo", mode=0o4755), b"#!sudo\n"),
        (_info("usr/bin/sudoedit", tarfile.LNKTYPE, linkname="usr/bin/sudo"), None),
        (_info("lib", tarfile.SYMTYPE, linkname="usr/lib"), None),
        (_info("var", d), None),
        (_info("var/log", d), None),
        (_info("home", d), None),
        (_info("home/pi", d, uid=1000, gid=1000, mode=0o700), None),
        *extra,
    ]


@pytest.fixture
def nfs(settings, tmp_path):
    settings.PUREBOOT_NFSROOT_DIR = tmp_path / "nfsroot"
    settings.PUREBOOT_BOOT_ROOT = tmp_path / "boot"
    settings.PUREBOOT_NFS_SERVER = "10.99.0.1"
    settings.PUREBOOT_NFS_GANESHA_CONFIG = ""
    return tmp_path


def _left_behind(tmp_path: Path) -> list[str]:
    """Everything under the templates and boot-file folders."""
    found = []
    for base in (tmp_path / "nfsroot" / "templates", tmp_path / "boot" / "nfsroot"):
        if base.exists():
            found += [str(p.relative_to(tmp_path)) for p in base.iterdir()]
    return found


# --- importing ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["tar.gz", "tar.zst"])
def test_import_unpacks_a_system_keeping_owners_modes_and_links(nfs, fmt):
    archive = make_archive(nfs / f"rpi.{fmt}", system_members(), fmt)
    out = io.StringIO()
    call_command("import_rootfs", "rpi-os", str(archive), "--arch", "aarch64", stdout=out)

    root = nfs / "nfsroot" / "templates" / "rpi-os"
    assert (root / "etc/hostname").read_text() == "template\n"
    shadow = os.lstat(root / "etc/shadow")
    assert (stat.S_IMODE(shadow.st_mode), shadow.st_gid) == (0o640, 42)
    assert stat.S_IMODE(os.lstat(root / "usr/bin/sudo").st_mode) == 0o4755  # set-uid kept
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/UTC"  # kept, not followed
    assert os.readlink(root / "lib") == "usr/lib"
    assert os.lstat(root / "usr/bin/sudoedit").st_ino == os.lstat(root / "usr/bin/sudo").st_ino
    home = os.lstat(root / "home/pi")
    assert (home.st_uid, stat.S_IMODE(home.st_mode)) == (1000, 0o700)
    assert os.lstat(root / "etc/hostname").st_mtime == 1_700_000_000

    template = RootFilesystem.objects.get(name="rpi-os")
    assert (template.arch, template.files) == ("aarch64", 6)  # hard link included
    assert (template.kernel, template.initrd) == (
        "boot/firmware/kernel8.img",
        "boot/firmware/initramfs8",
    )
    assert template.sha256 == rootfs_archive.sha256_file(archive)
    assert template.kernel_file == "nfsroot/rpi-os/kernel8.img"
    assert (nfs / "boot" / template.kernel_file).read_bytes() == KERNEL
    assert (nfs / "boot" / template.initrd_file).read_bytes() == INITRD
    event = AuditEvent.objects.get(action="rootfs.import")
    assert event.details["name"] == "rpi-os" and event.details["sha256"] == template.sha256
    assert "exported as /pureboot/templates/rpi-os" in out.getvalue()
    assert _left_behind(nfs) == ["nfsroot/templates/rpi-os", "boot/nfsroot/rpi-os"]


@pytest.mark.django_db
def test_import_finds_a_debian_kernel_or_takes_the_named_one(nfs):
    d = tarfile.DIRTYPE
    members = [
        (_info("boot", d), None),
        (_info("boot/vmlinuz-6.1.0-9-arm64"), b"old"),
        (_info("boot/initrd.img-6.1.0-9-arm64"), b"old initrd"),
        (_info("boot/vmlinuz-6.1.0-10-arm64"), b"new"),
        (_info("boot/initrd.img-6.1.0-10-arm64"), b"new initrd"),
        (_info("vmlinuz", tarfile.SYMTYPE, linkname="boot/vmlinuz-6.1.0-10-arm64"), None),
        (_info("opt", d), None),
        (_info("opt/k"), b"custom kernel"),
        (_info("opt/i"), b"custom initrd"),
    ]
    archive = make_archive(nfs / "deb.tar.gz", members)
    call_command("import_rootfs", "deb", str(archive), "--arch", "aarch64")
    assert RootFilesystem.objects.get(name="deb").kernel == "boot/vmlinuz-6.1.0-10-arm64"

    call_command(
        "import_rootfs", "deb2", str(archive), "--arch", "aarch64", "--kernel", "/opt/k",
        "--initrd", "opt/i",
    )  # fmt: skip
    assert (nfs / "boot/nfsroot/deb2/k").read_bytes() == b"custom kernel"
    with pytest.raises(CommandError, match="--kernel vmlinuz: no such regular file"):
        call_command(
            "import_rootfs", "deb3", str(archive), "--arch", "aarch64", "--kernel", "vmlinuz",
            "--initrd", "opt/i",
        )  # fmt: skip


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    return outside


@pytest.mark.django_db
@pytest.mark.parametrize(
    "extra, message",
    [
        ([(_info("../evil"), b"x")], r"'\.\./evil' climbs out of the root"),
        ([(_info("/etc/evil"), b"x")], "'/etc/evil' is an absolute name"),
        (
            [(_info("etc/x", tarfile.SYMTYPE, linkname="../../../etc/shadow"), None)],
            r"symbolic link 'etc/x' -> '\.\./\.\./\.\./etc/shadow' leads out of the root",
        ),
        (
            [(_info("dev", tarfile.DIRTYPE), None), (_info("dev/null", tarfile.CHRTYPE), None)],
            "'dev/null' is a device node",
        ),
        ([(_info("fifo", tarfile.FIFOTYPE), None)], "neither a file, a folder nor a link"),
        (
            [(_info("etc/link", tarfile.LNKTYPE, linkname="etc/missing"), None)],
            "hard link 'etc/link' points at 'etc/missing'",
        ),
    ],
    ids=["dotdot", "absolute", "symlink-escape", "device", "fifo", "hardlink"],
)
def test_hostile_archives_are_refused_whole(nfs, extra, message):
    archive = make_archive(nfs / "bad.tar.gz", system_members(*extra))
    with pytest.raises(CommandError, match=message):
        call_command("import_rootfs", "bad", str(archive), "--arch", "aarch64")
    assert _left_behind(nfs) == []
    assert not RootFilesystem.objects.exists()


@pytest.mark.django_db
def test_a_member_written_through_a_symbolic_link_is_refused(nfs):
    outside = _outside(nfs)
    members = system_members(
        (_info("escape", tarfile.SYMTYPE, linkname=str(outside)), None),
        (_info("escape/owned"), b"written outside the template"),
    )
    archive = make_archive(nfs / "bad.tar.gz", members)
    with pytest.raises(CommandError, match="'escape/owned' would be written through the symbolic"):
        call_command("import_rootfs", "bad", str(archive), "--arch", "aarch64")
    assert list(outside.iterdir()) == []
    assert _left_behind(nfs) == []


@pytest.mark.django_db
def test_decompression_bombs_oversize_and_member_floods_are_refused(nfs, settings, monkeypatch):
    monkeypatch.setattr(rootfs_archive, "MIN_UNPACK_LIMIT", 2**20)
    bomb = make_archive(nfs / "bomb.tar.gz", system_members((_info("zeros"), bytes(20 * 2**20))))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(CommandError, match="a decompression bomb"):
        call_command("import_rootfs", "bomb", str(bomb), "--arch", "aarch64")
    assert _left_behind(nfs) == []

    monkeypatch.setattr(rootfs_archive, "MAX_ARCHIVE_FILES", 5)
    flood = make_archive(nfs / "flood.tar.zst", system_members(), "tar.zst")
    with pytest.raises(CommandError, match="more than 5 archive members"):
        call_command("import_rootfs", "flood", str(flood), "--arch", "aarch64")

    settings.PUREBOOT_MAX_IMAGE_BYTES = 100
    with pytest.raises(CommandError, match="larger than PUREBOOT_MAX_IMAGE_BYTES"):
        call_command("import_rootfs", "big", str(flood), "--arch", "aarch64")
    assert _left_behind(nfs) == []


@pytest.mark.django_db
def test_broken_or_bootless_archives_are_refused(nfs):
    junk = nfs / "junk.tar.gz"
    junk.write_bytes(b"not an archive at all")
    with pytest.raises(CommandError, match="neither gzip nor zstd data"):
        call_command("import_rootfs", "junk", str(junk), "--arch", "aarch64")

    good = make_archive(nfs / "good.tar.gz", system_members()).read_bytes()
    cut = nfs / "cut.tar.gz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(CommandError, match="not a complete tar.gz archive"):
        call_command("import_rootfs", "cut", str(cut), "--arch", "aarch64")

    bootless = make_archive(nfs / "bootless.tar.gz", [(_info("etc", tarfile.DIRTYPE), None)])
    with pytest.raises(CommandError, match="no kernel with an initramfs found"):
        call_command("import_rootfs", "bootless", str(bootless), "--arch", "aarch64")
    with pytest.raises(CommandError, match="no kernel with an initramfs found"):
        # An armhf system is looked for under kernel7l.img, not kernel8.img.
        call_command("import_rootfs", "armhf", str(nfs / "good.tar.gz"), "--arch", "armhf")
    assert _left_behind(nfs) == []


# --- replacing and removing ------------------------------------------------------------


def _nfs_workflow(root: str = "rpi-os", name: str = "diskless") -> str:
    return f"name: {name}\narch: [aarch64]\ntasks:\n  - type: nfs_root\n    root: {root}\n"


@pytest.mark.django_db
def test_replace_and_remove_are_refused_while_live_nodes_boot_it(nfs):
    archive = make_archive(nfs / "rpi.tar.gz", system_members())
    call_command("import_rootfs", "rpi-os", str(archive), "--arch", "aarch64")
    with pytest.raises(CommandError, match="exists; --replace replaces it"):
        call_command("import_rootfs", "rpi-os", str(archive), "--arch", "aarch64")
    workflow = make_workflow(content=_nfs_workflow())
    node = make_node(
        "active", arch="aarch64", workflow=workflow, workflow_version=workflow.versions.get()
    )
    with pytest.raises(CommandError, match=rf"booted by nodes {node.pk}: it cannot be replaced"):
        call_command("import_rootfs", "rpi-os", str(archive), "--arch", "aarch64", "--replace")
    with pytest.raises(CommandError, match=rf"booted by nodes {node.pk}: it cannot be removed"):
        call_command("remove_rootfs", "rpi-os")

    node.__class__.objects.filter(pk=node.pk).update(state="retired")
    pk = RootFilesystem.objects.get().pk
    newer = make_archive(nfs / "new.tar.zst", system_members((_info("new"), b"2")), "tar.zst")
    call_command("import_rootfs", "rpi-os", str(newer), "--arch", "aarch64", "--replace")
    template = RootFilesystem.objects.get()
    assert template.pk == pk  # same row: its export id stays the same
    assert (nfs / "nfsroot/templates/rpi-os/new").read_bytes() == b"2"
    assert AuditEvent.objects.filter(action="rootfs.replace").count() == 1
    assert _left_behind(nfs) == ["nfsroot/templates/rpi-os", "boot/nfsroot/rpi-os"]

    call_command("remove_rootfs", "rpi-os")
    assert not RootFilesystem.objects.exists()
    assert _left_behind(nfs) == []
    assert AuditEvent.objects.filter(action="rootfs.remove").count() == 1
    with pytest.raises(CommandError, match="no root file system 'rpi-os'"):
        call_command("remove_rootfs", "rpi-os")


# --- the nfs_root task type ---------------------------------------------------------


@pytest.mark.parametrize(
    "task, path, message",
    [
        ("root: rpi-os\n    overlay: [etc]", "tasks[0].overlay[0]", "must be an absolute folder"),
        ("root: rpi-os\n    overlay: [/etc/../x]", "tasks[0].overlay[0]", "absolute folder"),
        ("root: rpi-os\n    overlay: [/var, /var/lib]", "tasks[0].overlay[1]", "inside one"),
        ("root: rpi-os\n    overlay: [/etc, /etc]", "tasks[0].overlay[1]", "listed twice"),
        ("root: 'a b'", "tasks[0].root", "the name of a root file system"),
        ("overlay: [/etc]", "tasks[0].root", "is required for nfs_root"),
    ],
)
def test_nfs_root_parameters_are_checked(task, path, message):
    with pytest.raises(DefinitionError) as caught:
        parse(f"name: d\ntasks:\n  - type: nfs_root\n    {task}\n")
    assert caught.value.path == path and message in caught.value.message


def test_nfs_root_is_the_whole_install_of_a_diskless_node():
    definition = parse(_nfs_workflow())
    assert definition.tasks[0] == {
        "type": "nfs_root",
        "root": "rpi-os",
        "overlay": ["/etc", "/var", "/home"],
    }
    with pytest.raises(DefinitionError, match="pxe_boot cannot share a workflow with nfs_root"):
        parse(_nfs_workflow() + "  - type: pxe_boot\n    kernel: k\n    initrd: i\n")
    with pytest.raises(DefinitionError, match="a workflow boots one NFS root"):
        parse(_nfs_workflow() + "  - type: nfs_root\n    root: other\n")


@pytest.mark.django_db
def test_saving_an_nfs_root_workflow_checks_the_setting_template_arch_and_folders(nfs, settings):
    def refusal(content: str) -> DefinitionError:
        with pytest.raises(DefinitionError) as caught:
            save_workflow(content, SYSTEM)
        return caught.value

    settings.PUREBOOT_NFS_SERVER = ""
    error = refusal(_nfs_workflow())
    assert "set PUREBOOT_NFS_SERVER" in error.message and error.path == "tasks[0].type"

    settings.PUREBOOT_NFS_SERVER = "10.99.0.1"
    error = refusal(_nfs_workflow())
    assert error.path == "tasks[0].root"
    assert "manage.py import_rootfs rpi-os ARCHIVE" in error.message

    archive = make_archive(nfs / "rpi.tar.gz", system_members())
    call_command("import_rootfs", "rpi-os", str(archive), "--arch", "aarch64")
    error = refusal(_nfs_workflow().replace("arch: [aarch64]", "arch: [aarch64, armhf]"))
    assert "is for aarch64; this workflow is for aarch64, armhf" in error.message
    error = refusal(_nfs_workflow().replace("arch: [aarch64]\n", ""))  # every arch
    assert "set its arch to [aarch64]" in error.message
    error = refusal(_nfs_workflow() + "    overlay: [/etc, /srv, /lib]\n")
    assert error.path == "tasks[0].overlay"
    assert "/srv is not a folder" in error.message and "/lib is not a folder" in error.message

    saved = save_workflow(_nfs_workflow(), SYSTEM)
    assert saved.version.tasks[0]["root"] == "rpi-os"
