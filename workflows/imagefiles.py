"""Image template files: streaming uploads, format checks, raw conversion, storage.

An upload is streamed to a temporary file under the image root while its
SHA-256 is computed; it becomes a template version only after its content
proved to be the declared format (magic bytes, structure, and ``qemu-img``
for block formats). A failed check deletes the temporary file: nothing
partial is ever left behind.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

import zstandard
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

BLOCK_FORMATS = ("raw", "qcow2", "vhdx")
FILE_FORMATS = ("wim", "tar.gz", "tar.zst", "squashfs")
# File-level formats the agent streams onto partitions (wim: the Windows path;
# squashfs cannot be unpacked from a stream).
ARCHIVE_FORMATS = ("tar.gz", "tar.zst")
# An archive is read whole at upload: bounds against decompression bombs (a
# root file system packs 2-5 times; a tree of zeros can pack 1000 times).
MAX_EXPANSION = 100
MAX_ARCHIVE_FILES = 2_000_000
FORMATS = BLOCK_FORMATS + FILE_FORMATS
SUFFIX = {
    "raw": ".img",
    "qcow2": ".qcow2",
    "vhdx": ".vhdx",
    "wim": ".wim",
    "tar.gz": ".tar.gz",
    "tar.zst": ".tar.zst",
    "squashfs": ".squashfs",
}
CHUNK = 1024 * 1024


log = logging.getLogger(__name__)


class FormatMismatch(ValueError):
    """The file is not what its declared format says, or is truncated."""


class ToolMissing(RuntimeError):
    """qemu-img is needed to check or convert block images and is not installed."""


def image_root() -> Path:
    root = Path(settings.PUREBOOT_IMAGE_ROOT)
    (root / ".incoming").mkdir(parents=True, exist_ok=True)
    return root


# --- temporary files in .incoming: in use, or abandoned -----------------------
# A process writing or checking a temporary file holds a shared lock on its
# first byte for as long as it uses it: an open-file-description lock (Linux),
# which lives with that open file whatever else the process opens and closes,
# and dies with the process when a server is killed. qemu-img's own image locks
# use other bytes, so they never meet this one.
_F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", None)
_FLOCK = struct.Struct("@hhqqi4x")  # struct flock: type, whence, start, len, pid


def _lock_first_byte(fd: int, kind: int) -> bool:
    """Lock byte 0 of ``fd``'s file without waiting; False if another holds it.

    Where such locks are unavailable (another platform, a filesystem without
    them) this says True: the age threshold alone then decides.
    """
    if _F_OFD_SETLK is None:
        return True
    try:
        fcntl.fcntl(fd, _F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, 0, 1, 0))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        return True
    return True


def hold(path: str | Path) -> BinaryIO:
    """Mark ``path`` in use until the returned file is closed (see sweep_incoming)."""
    held = open(path, "rb")  # the caller closes it to release the lock
    _lock_first_byte(held.fileno(), fcntl.F_RDLCK)
    return held


def sweep_incoming(stale_minutes: int | None = None) -> int:
    """Delete temporary files an interrupted upload or conversion left behind.

    A file is abandoned when it is unmodified for ``stale_minutes``
    (PUREBOOT_INCOMING_STALE_MINUTES) and no process holds it (:func:`hold`):
    a server killed mid-upload, a lost connection. An upload or conversion in
    progress is never deleted, however long it has not written. Runs at start
    (``manage.py bootstrap``) and periodically (a Celery beat task). Returns
    how many files it deleted.
    """
    minutes = settings.PUREBOOT_INCOMING_STALE_MINUTES if stale_minutes is None else stale_minutes
    cutoff = time.time() - minutes * 60
    removed = 0
    for path in (image_root() / ".incoming").iterdir():
        try:
            if not path.is_file() or path.is_symlink() or path.stat().st_mtime >= cutoff:
                continue
            with path.open("r+b") as probe:  # an exclusive lock needs a writable file
                if not _lock_first_byte(probe.fileno(), fcntl.F_WRLCK):
                    continue  # its writer is alive
                path.unlink()
            removed += 1
        except FileNotFoundError:
            continue  # finished (moved into place) meanwhile
    if removed:
        log.info("images: removed %d abandoned temporary file(s) from .incoming", removed)
    return removed


def kind_of(fmt: str) -> str:
    return "block" if fmt in BLOCK_FORMATS else "file"


# --- streaming upload -------------------------------------------------------


class HashedTemporaryFile(UploadedFile):
    """An uploaded file on disk under the image root, with its SHA-256 and size."""

    def __init__(self, name: str, content_type: str, charset):
        fd, path = tempfile.mkstemp(dir=image_root() / ".incoming", prefix="upload-")
        super().__init__(os.fdopen(fd, "w+b"), name, content_type, 0, charset)
        self.temporary_path = path
        self.hasher = hashlib.sha256()
        # In use until the request is over (Django closes uploaded files then):
        # through the upload, the format checks and the move into storage.
        self._held = hold(path)

    def temporary_file_path(self) -> str:
        return self.temporary_path

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._held.close()

    def discard(self) -> None:
        self.close()
        Path(self.temporary_path).unlink(missing_ok=True)


class HashingUploadHandler(FileUploadHandler):
    """Writes each uploaded file straight to disk, hashing it on the way.

    Never holds a file in memory; stops the upload once it passes
    PUREBOOT_MAX_IMAGE_BYTES.
    """

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.file = HashedTemporaryFile(self.file_name, self.content_type, self.charset)

    def receive_data_chunk(self, raw_data, start):
        self.file.size += len(raw_data)
        if self.file.size > settings.PUREBOOT_MAX_IMAGE_BYTES:
            self.file.discard()
            self.request.pureboot_upload_too_large = True
            raise StopUpload(connection_reset=True)
        self.file.hasher.update(raw_data)
        self.file.write(raw_data)

    def file_complete(self, file_size):
        self.file.flush()
        self.file.seek(0)
        self.file.sha256 = self.file.hasher.hexdigest()
        return self.file

    def upload_interrupted(self):
        if hasattr(self, "file"):
            self.file.discard()


# --- format checks ----------------------------------------------------------


def _head(path: Path, n: int = 512) -> bytes:
    with path.open("rb") as fh:
        return fh.read(n)


def _run(argv: list[str], timeout: int) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise FormatMismatch(f"{argv[0]} {argv[1]} took longer than {timeout} s") from None


def qemu_img_info(path: Path, fmt: str) -> dict:
    exe = shutil.which("qemu-img")
    if exe is None:
        raise ToolMissing("qemu-img is not installed (Debian package qemu-utils)")
    proc = _run([exe, "info", "--output=json", "-f", fmt, str(path)], timeout=120)
    if proc.returncode != 0:
        raise FormatMismatch(f"qemu-img cannot read it as {fmt}: {proc.stderr.strip()[:300]}")
    info = json.loads(proc.stdout)
    # An image that refers to another file (a backing file or an external data
    # file) would make qemu-img read that host file when converting: refuse.
    specific = (info.get("format-specific") or {}).get("data") or {}
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise FormatMismatch("images with a backing file are refused; upload a standalone image")
    if specific.get("data-file"):
        raise FormatMismatch("images with an external data file are refused")
    return info


def _qemu_img_check(path: Path, fmt: str) -> None:
    exe = shutil.which("qemu-img")
    if exe is None:
        raise ToolMissing("qemu-img is not installed (Debian package qemu-utils)")
    proc = _run([exe, "check", "-f", fmt, str(path)], timeout=600)
    # 0: clean; 1: check not completed (error); 2: corruption; 3: leaked clusters only.
    if proc.returncode in (1, 2):
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise FormatMismatch(
            f"qemu-img check failed for {fmt}: {(detail[-1] if detail else 'corrupt')[:300]}"
        )


def _check_wim(path: Path, size: int) -> None:
    header = _head(path, 208)
    if len(header) < 208 or header[:8] != b"MSWIM\x00\x00\x00":
        raise FormatMismatch("not a WIM file (no MSWIM header)")
    # Resource headers: 7-byte size + 1 flag byte, 8-byte offset, 8-byte original size.
    for name, at in (("lookup table", 0x30), ("XML data", 0x48)):
        raw_size = int.from_bytes(header[at : at + 7], "little")
        (offset,) = struct.unpack_from("<Q", header, at + 8)
        if offset + raw_size > size:
            raise FormatMismatch(f"WIM is truncated: its {name} ends past the end of the file")


def _check_squashfs(path: Path, size: int) -> None:
    header = _head(path, 96)
    if len(header) < 96 or header[:4] != b"hsqs":
        raise FormatMismatch("not a squashfs image (no hsqs superblock)")
    (bytes_used,) = struct.unpack_from("<Q", header, 40)
    if bytes_used > size:
        raise FormatMismatch(f"squashfs is truncated: {bytes_used} bytes used, file has {size}")


def _check_tar(path: Path, fmt: str) -> dict:
    """Read the whole archive once: it must be complete, and its file manifest is made.

    The manifest is what the agent proves after unpacking, by reading every
    file back from the disk: the SHA-256 of the lines ``<sha256>  ./<path>``
    (sorted bytewise by path) of every regular file, hard links included
    with their target's content, the last entry of a path winning as tar
    extracts it. Returns the unpacked size, file count and that digest.
    """
    if fmt == "tar.gz" and _head(path, 2) != b"\x1f\x8b":
        raise FormatMismatch("not gzip data (tar.gz starts with 1f 8b)")
    if fmt == "tar.zst" and _head(path, 4) != b"\x28\xb5\x2f\xfd":
        raise FormatMismatch("not zstd data (tar.zst starts with 28 b5 2f fd)")
    files: dict[bytes, str] = {}
    unpacked = 0
    members = 0
    limit = max(path.stat().st_size * MAX_EXPANSION, 2**30)
    try:
        with path.open("rb") as raw:
            if fmt == "tar.zst":
                stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
                archive = tarfile.open(fileobj=stream, mode="r|")
            else:
                archive = tarfile.open(fileobj=raw, mode="r|gz")
            with archive:
                for member in archive:
                    members += 1
                    if members > MAX_ARCHIVE_FILES:
                        raise FormatMismatch(f"more than {MAX_ARCHIVE_FILES} archive members")
                    name = _archive_path(member.name)
                    if member.isreg():
                        if unpacked + member.size > limit:
                            raise FormatMismatch(
                                f"it unpacks to more than {limit} bytes ({MAX_EXPANSION} times "
                                "its size, or 1 GiB): a decompression bomb, not a file system"
                            )
                        files[name] = _sha256_of(archive.extractfile(member))
                        unpacked += member.size
                    elif member.islnk():
                        target = _archive_path(member.linkname)
                        if target not in files:
                            raise FormatMismatch(
                                f"hard link {member.name!r} points at {member.linkname!r}, which "
                                "is not a file earlier in the archive"
                            )
                        files[name] = files[target]
                    else:
                        files.pop(name, None)  # a later directory or link replaces a file
    except (tarfile.TarError, EOFError, OSError, zstandard.ZstdError) as exc:
        raise FormatMismatch(f"not a complete {fmt} archive: {exc}") from None
    if members == 0:
        raise FormatMismatch("the tar archive is empty")
    manifest = hashlib.sha256()
    for name in sorted(files):
        manifest.update(files[name].encode() + b"  ./" + name + b"\n")
    return {"virtual_size": unpacked, "content_sha256": manifest.hexdigest(), "files": len(files)}


def _sha256_of(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _archive_path(name: str) -> bytes:
    """A member's path as it lands under the target root, as bytes (``./`` and ``/`` off)."""
    parts = [p for p in name.encode("utf-8", "surrogateescape").split(b"/") if p not in (b"", b".")]
    if b".." in parts:
        raise FormatMismatch(f"{name!r} climbs out of the target with '..'")
    return b"/".join(parts)


def check_format(path: Path, fmt: str) -> dict:
    """Prove ``path`` is a complete ``fmt`` file; returns facts (virtual size for blocks)."""
    size = path.stat().st_size
    if size == 0:
        raise FormatMismatch("the file is empty")
    head = _head(path, 8)
    if fmt == "qcow2":
        if head[:4] != b"QFI\xfb":
            raise FormatMismatch("not a qcow2 image (no QFI\\xfb magic)")
        info = qemu_img_info(path, "qcow2")
        _qemu_img_check(path, "qcow2")
        return {"virtual_size": info.get("virtual-size")}
    if fmt == "vhdx":
        if head[:8] != b"vhdxfile":
            raise FormatMismatch("not a VHDX image (no vhdxfile signature)")
        info = qemu_img_info(path, "vhdx")
        _qemu_img_check(path, "vhdx")
        return {"virtual_size": info.get("virtual-size")}
    if fmt == "raw":
        for magic, name in ((b"QFI\xfb", "qcow2"), (b"vhdxfile", "VHDX"), (b"MSWIM", "WIM")):
            if head.startswith(magic):
                raise FormatMismatch(f"declared raw, but this is a {name} file")
        if size % 512:
            raise FormatMismatch(f"a raw disk image is whole 512-byte sectors; {size} is not")
        info = qemu_img_info(path, "raw")
        return {"virtual_size": info.get("virtual-size")}
    if fmt == "wim":
        _check_wim(path, size)
        return {}
    if fmt == "squashfs":
        _check_squashfs(path, size)
        return {}
    if fmt in ARCHIVE_FORMATS:
        return _check_tar(path, fmt)
    raise FormatMismatch(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def store(temp_path: Path, sha256: str, fmt: str) -> str:
    """Move a checked upload into content-addressed storage; returns its relative path."""
    relative = f"{sha256[:2]}/{sha256}{SUFFIX[fmt]}"
    final = image_root() / relative
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp_path, final)
    return relative


def convert_to_raw(source: Path, fmt: str) -> tuple[str, int, str]:
    """``qemu-img convert`` a block image to raw; returns (relative path, size, sha256)."""
    exe = shutil.which("qemu-img")
    if exe is None:
        raise ToolMissing("qemu-img is not installed (Debian package qemu-utils)")
    fd, tmp = tempfile.mkstemp(dir=image_root() / ".incoming", prefix="convert-")
    os.close(fd)
    held = hold(tmp)  # through the conversion, the hashing and the move
    try:
        # Re-check right before converting: the stored file must still be standalone.
        qemu_img_info(source, fmt)
        proc = _run([exe, "convert", "-f", fmt, "-O", "raw", str(source), tmp], timeout=6 * 3600)
        if proc.returncode != 0:
            raise FormatMismatch(f"qemu-img convert failed: {proc.stderr.strip()[:300]}")
        hasher = hashlib.sha256()
        with open(tmp, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                hasher.update(chunk)
        digest = hasher.hexdigest()
        size = os.path.getsize(tmp)
        return store(Path(tmp), digest, "raw"), size, digest
    finally:
        Path(tmp).unlink(missing_ok=True)
        held.close()
