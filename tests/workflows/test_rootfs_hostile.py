"""Hostile root file system archives: each class of attack a review found, refused whole.

A victim folder under tmp_path stands for the controller's own files: after a
refusal it must have the same entries, owners, modes and link counts.
"""

from __future__ import annotations

import getpass
import gzip
import hashlib
import io
import os
import socket
import tarfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from tests.factories import make_node, make_workflow
from tests.workflows import test_rootfs
from tests.workflows.test_rootfs import (
    _info,
    _left_behind,
    _nfs_workflow,
    make_archive,
    system_members,
)
from workflows import rootfs, rootfs_archive
from workflows.models import RootFilesystem

D, L, H = tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
nfs = test_rootfs.nfs  # the settings fixture, shared with the ordinary import tests


def _victim(tmp_path: Path, name: str) -> Path:
    """A controller folder holding a folder and a file an archive must not touch."""
    victim = tmp_path / name
    (victim / "secret").mkdir(parents=True, mode=0o755)
    (victim / "secret" / "keep").write_text("controller data\n")
    (victim / "file").write_text("controller file\n")
    return victim


def _snapshot(victim: Path) -> dict:
    """Every entry under ``victim`` with owner, mode, link count and mtime."""
    found = {}
    for path in [victim, *sorted(victim.rglob("*"))]:
        st = os.lstat(path)
        found[str(path.relative_to(victim))] = (
            st.st_uid,
            st.st_gid,
            st.st_mode,
            st.st_nlink,
            st.st_mtime_ns,
        )
    return found


def _refused(nfs: Path, members: list, message: str) -> None:
    archive = make_archive(nfs / "bad.tar.gz", system_members(*members))
    with pytest.raises(CommandError, match=message):
        call_command("import_rootfs", "bad", str(archive), "--arch", "aarch64")
    assert _left_behind(nfs) == []
    assert not RootFilesystem.objects.exists()


# --- a folder replaced by a link, a hard link through it, a member listed twice ------------


@pytest.mark.django_db
def test_a_folder_replaced_by_a_link_cannot_redirect_its_metadata(nfs):
    victim = _victim(nfs, "victim")
    before = _snapshot(victim)
    members = [
        (_info("a", D), None),
        (_info("a/secret", D, mode=0o4777, uid=1234, gid=1234), None),
        (_info("a", L, linkname=str(victim)), None),
    ]
    _refused(nfs, members, "'a' appears twice: it would replace an earlier member")
    assert _snapshot(victim) == before


@pytest.mark.django_db
def test_a_hard_link_cannot_pull_a_controller_file_into_the_template(nfs):
    victim = _victim(nfs, "victim2")
    before = _snapshot(victim)
    members = [
        (_info("a", D), None),
        (_info("a/file"), b"archive data"),
        (_info("a", L, linkname=str(victim)), None),
        (_info("stolen", H, linkname="a/file"), None),
    ]
    _refused(nfs, members, "'a' appears twice")
    assert _snapshot(victim) == before  # link count of victim2/file still 1


@pytest.mark.django_db
def test_a_hard_link_under_a_replaced_folder_is_the_modules_error(nfs):
    victim = _victim(nfs, "victim3")
    victim.chmod(0o500)  # os.link there was a raw PermissionError
    before = _snapshot(victim)
    members = [
        (_info("a", D), None),
        (_info("a/file"), b"archive data"),
        (_info("a", L, linkname=str(victim)), None),
        (_info("a/link", H, linkname="a/file"), None),
    ]
    _refused(nfs, members, "'a' appears twice")
    assert _snapshot(victim) == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "members, message",
    [
        ([(_info("x"), b"1"), (_info("x"), b"2")], "'x' appears twice"),
        ([(_info("x", D), None), (_info("x"), b"2")], "'x' appears twice"),
        ([(_info("y/z"), b"1"), (_info("y"), b"2")], "'y' appears twice"),  # implicit folder
        ([(_info("x"), b"1"), (_info("x", L, linkname="etc"), None)], "'x' appears twice"),
        ([(_info("x"), b"1"), (_info("x", H, linkname="x"), None)], "'x' appears twice"),
        ([(_info("n" * 300), b"1")], r"'n{300}' cannot be unpacked: .*File name too long"),
        ([(_info("p/" * 2100 + "q"), b"1")], "a name or link longer than 4096"),
    ],
    ids=["file", "dir-then-file", "implicit-dir", "symlink", "hardlink", "oserror", "path-max"],
)
def test_a_path_is_written_once_and_os_errors_name_the_member(nfs, members, message):
    _refused(nfs, members, message)


@pytest.mark.django_db
def test_a_folder_listed_again_only_changes_its_metadata(nfs):
    members = [
        (_info("srv", D, mode=0o755), None),
        (_info("srv/data"), b"kept"),
        (_info("srv", D, mode=0o750, uid=33, gid=33), None),
    ]
    archive = make_archive(nfs / "ok.tar.gz", system_members(*members))
    call_command("import_rootfs", "ok", str(archive), "--arch", "aarch64")
    srv = nfs / "nfsroot/templates/ok/srv"
    st = os.lstat(srv)
    assert (st.st_mode & 0o7777, st.st_uid) == (0o750, 33)
    assert (srv / "data").read_bytes() == b"kept"


def test_a_link_planted_in_the_tree_is_never_followed(tmp_path):
    """Defence in depth: nothing in an archive can plant these, but the walk refuses them."""
    victim = _victim(tmp_path, "victim4")
    before = _snapshot(victim)
    root = tmp_path / "root"
    root.mkdir()
    unpacker = rootfs_archive._Unpacker(root, 2**20)
    unpacker.add(None, _info("a", D, mode=0o4777))
    unpacker.close()
    (root / "a").rmdir()
    (root / "a").symlink_to(victim)
    with pytest.raises(rootfs_archive.RootfsError, match="through the symbolic link 'a'"):
        unpacker.add(None, _info("a/secret", D))
    with pytest.raises(rootfs_archive.RootfsError, match="written through the symbolic link .a."):
        unpacker.finish()  # its mode 04777 is not applied through the link
    assert _snapshot(victim) == before


def test_a_hard_link_needs_the_very_file_the_archive_wrote(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    members = [(_info("f"), b"archive data"), (_info("g", H, linkname="f"), None)]
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for info, content in members:
            if content is not None:
                info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    data.seek(0)
    unpacker = rootfs_archive._Unpacker(root, 2**20)
    with tarfile.open(fileobj=data, mode="r|") as tar:
        unpacker.add(tar, tar.next())
        (root / "f").rename(root / "kept")  # kept, so the new file gets another inode
        (root / "f").write_bytes(b"something else")
        with pytest.raises(rootfs_archive.RootfsError, match="no longer the file the archive"):
            unpacker.add(tar, tar.next())
    unpacker.close()
    assert not (root / "g").exists()


# --- header bombs ---------------------------------------------------------------------


def _long_name_header(size: int) -> bytes:
    info = tarfile.TarInfo("././@LongLink")
    info.type = tarfile.GNUTYPE_LONGNAME
    info.size = size
    return info.tobuf(tarfile.GNU_FORMAT)


@pytest.mark.django_db
def test_a_long_name_header_bomb_is_refused_before_it_is_read(nfs):
    # The header claims 400 MiB; tarfile would have read it whole into memory.
    bomb = nfs / "bomb.tar.gz"
    bomb.write_bytes(gzip.compress(_long_name_header(400 * 2**20) + bytes(64 * 1024)))
    with pytest.raises(CommandError, match="a long-name or pax header of 419430400 bytes"):
        call_command("import_rootfs", "bomb", str(bomb), "--arch", "aarch64")
    assert _left_behind(nfs) == []


@pytest.mark.django_db
def test_pax_headers_are_bounded_alone_and_chained(nfs):
    big = _info("etc/motd", pax_headers={"comment": "x" * (2 * 2**20)})
    _refused(nfs, [(big, b"hi")], "a long-name or pax header of")
    # Many headers of 600 KiB each, chained before one member, count together.
    chained = (_long_name_header(600 * 1024) + bytes(600 * 1024)) * 2
    bomb = nfs / "chain.tar.gz"
    bomb.write_bytes(gzip.compress(chained + bytes(10240)))
    with pytest.raises(CommandError, match="a long-name or pax header of 614400 bytes"):
        call_command("import_rootfs", "chain", str(bomb), "--arch", "aarch64")


@pytest.mark.django_db
def test_the_decompressed_stream_itself_is_capped(nfs, monkeypatch):
    monkeypatch.setattr(rootfs_archive, "MIN_UNPACK_LIMIT", 2**20)
    monkeypatch.setattr(rootfs_archive, "MAX_HEADER_BYTES", 2**40)  # only the stream cap left
    streams: list = []

    class Spy(rootfs_archive._Capped):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            streams.append(self)

    monkeypatch.setattr(rootfs_archive, "_Capped", Spy)
    size = 20 * 2**20
    body = _long_name_header(size) + b"a" * size + bytes(1024)
    bomb = nfs / "stream.tar.gz"
    bomb.write_bytes(gzip.compress(body, compresslevel=1))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(CommandError, match="a decompression bomb"):
        call_command("import_rootfs", "stream", str(bomb), "--arch", "aarch64")
    (stream,) = streams
    assert stream.limit == max(bomb.stat().st_size * rootfs_archive.MAX_EXPANSION, 2**20)
    assert stream.limit < stream.count <= stream.limit + rootfs_archive.CHUNK  # stopped there
    assert _left_behind(nfs) == []


# --- kernel names, actor, digest, the race ---------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "members, options, message",
    [
        (
            [
                (_info("boot/vmlinuz-6.1 ;shell"), b"k"),
                (_info("boot/initrd.img-6.1 ;shell"), b"i"),
            ],
            [],
            r"the kernel 'boot/vmlinuz-6\.1 ;shell': a kernel's or initramfs's path may hold",
        ),
        (
            [(_info("opt", D), None), (_info("opt/k$x"), b"k"), (_info("opt/i"), b"i")],
            ["--kernel", "opt/k$x", "--initrd", "opt/i"],
            r"--kernel 'opt/k\$x': a kernel's",
        ),
        (
            [(_info("opt", D), None), (_info("opt/i"), b"i")],
            ["--kernel", "opt/../etc/hostname", "--initrd", "opt/i"],
            r"--kernel 'opt/\.\./etc/hostname'.*\(no '\.\.'\)",
        ),
    ],
    ids=["found", "given", "dotdot"],
)
def test_kernel_and_initramfs_names_are_plain(nfs, members, options, message):
    d = [(_info("boot", D), None)]
    archive = make_archive(nfs / "k.tar.gz", d + members)
    with pytest.raises(CommandError, match=message):
        call_command("import_rootfs", "k", str(archive), "--arch", "aarch64", *options)
    assert _left_behind(nfs) == []


@pytest.mark.django_db
def test_the_audit_names_the_host_account_and_the_bytes_unpacked(nfs, monkeypatch):
    def no_second_read(path):
        raise AssertionError("the archive is hashed while it is unpacked, not read twice")

    monkeypatch.setattr(rootfs_archive, "sha256_file", no_second_read)
    archive = make_archive(nfs / "rpi.tar.gz", system_members())
    # Bytes after the archive's end are part of the file, and of its sum.
    archive.write_bytes(archive.read_bytes() + bytes(4096))
    call_command("import_rootfs", "rpi-os", str(archive), "--arch", "aarch64")
    call_command("remove_rootfs", "rpi-os")

    actor = f"host:{getpass.getuser()}@{socket.gethostname()}"
    imported = AuditEvent.objects.get(action="rootfs.import")
    assert imported.actor == actor
    assert imported.details["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert AuditEvent.objects.get(action="rootfs.remove").actor == actor


@pytest.mark.django_db
def test_replace_is_refused_when_a_node_took_the_template_while_unpacking(nfs, monkeypatch):
    archive = make_archive(nfs / "rpi.tar.gz", system_members((_info("old"), b"1")))
    call_command("import_rootfs", "rpi-os", str(archive), "--arch", "aarch64")
    unpack = rootfs.unpack
    taken = {}

    def unpack_while_a_node_is_provisioned(*args):
        result = unpack(*args)
        workflow = make_workflow(content=_nfs_workflow())
        taken["node"] = make_node(
            "active", arch="aarch64", workflow=workflow, workflow_version=workflow.versions.get()
        )
        return result

    monkeypatch.setattr(rootfs, "unpack", unpack_while_a_node_is_provisioned)
    newer = make_archive(nfs / "new.tar.gz", system_members((_info("new"), b"2")))
    with pytest.raises(CommandError, match=r"booted by nodes \d+: it cannot be replaced"):
        call_command("import_rootfs", "rpi-os", str(newer), "--arch", "aarch64", "--replace")
    assert taken["node"].pk
    tree = nfs / "nfsroot/templates/rpi-os"
    assert (tree / "old").read_bytes() == b"1" and not (tree / "new").exists()
    assert _left_behind(nfs) == ["nfsroot/templates/rpi-os", "boot/nfsroot/rpi-os"]
    assert not AuditEvent.objects.filter(action="rootfs.replace").exists()
    assert RootFilesystem.objects.get().sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
