"""Unpacking a root file system archive on the controller without trusting it.

The archive comes from an operator but is unpacked as root, so it is read as
hostile: a member named with ``..`` or an absolute path, one written through
a symbolic link (``etc -> /etc`` then ``etc/passwd``), a relative link that
climbs out of the root, a device node, a FIFO, a hard link to anything but a
file met earlier, more members than MAX_ARCHIVE_FILES, or more bytes than
MAX_EXPANSION times the archive's size (a decompression bomb) refuses the
whole archive. Absolute symbolic links are kept as they are: they mean
something only on the node, inside its own root, and nothing on the
controller follows one. Owners, modes (set-id bits included), times and
extended attributes (file capabilities) are kept, since the tree is a
system that boots.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

import zstandard

from .imagefiles import CHUNK, MAX_ARCHIVE_FILES, MAX_EXPANSION

# Below this an archive may always unpack to (a small archive of a real root
# file system packs 2-5 times; the expansion bound is for big ones).
MIN_UNPACK_LIMIT = 2**30


class RootfsError(Exception):
    """The archive or the request cannot become a template; the message says why."""


def archive_format(path: Path) -> str:
    """``tar.gz`` or ``tar.zst``, from the file's first bytes (not its name)."""
    with path.open("rb") as fh:
        head = fh.read(4)
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if head == b"\x28\xb5\x2f\xfd":
        return "tar.zst"
    raise RootfsError(f"{path} is neither gzip nor zstd data: give a .tar.gz or .tar.zst")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _open_tar(raw: BinaryIO, fmt: str) -> tarfile.TarFile:
    if fmt == "tar.zst":
        stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return tarfile.open(fileobj=stream, mode="r|")
    return tarfile.open(fileobj=raw, mode="r|gz")


def member_parts(name: str) -> tuple[str, ...]:
    """A member's path below the root as parts; RootfsError for ``..`` or an absolute name."""
    if name.startswith("/"):
        raise RootfsError(f"{name!r} is an absolute name: an archive's names are relative")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise RootfsError(f"{name!r} climbs out of the root with '..'")
    return parts


def _climbs_out(parts: tuple[str, ...], target: str) -> bool:
    """Whether relative link ``target`` of the member at ``parts`` leads above the root."""
    depth = len(parts) - 1  # the link's folder
    for piece in target.split("/"):
        if piece in ("", "."):
            continue
        depth = depth - 1 if piece == ".." else depth + 1
        if depth < 0:
            return True
    return False


class _Unpacker:
    """Writes members under ``root`` without ever following a link on the controller."""

    def __init__(self, root: Path, limit: int) -> None:
        self.root = root
        self.limit = limit
        self.size = 0
        self.files: set[tuple[str, ...]] = set()
        self.dirs: list[tuple[Path, tarfile.TarInfo]] = []
        self.as_root = os.geteuid() == 0

    def parent(self, parts: tuple[str, ...], name: str) -> None:
        """Make the member's folders, refusing to pass through a link or a file."""
        here = self.root
        for part in parts[:-1]:
            here = here / part
            try:
                mode = os.lstat(here).st_mode
            except FileNotFoundError:
                here.mkdir(mode=0o755)
                continue
            if stat.S_ISLNK(mode):
                raise RootfsError(
                    f"{name!r} would be written through the symbolic link "
                    f"{'/'.join(here.relative_to(self.root).parts)!r}"
                )
            if not stat.S_ISDIR(mode):
                raise RootfsError(f"{name!r} lies under a file, not a folder")

    def clear(self, path: Path) -> None:
        """A later member replaces an earlier one of the same name, as tar does."""
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISDIR(mode):
            shutil.rmtree(path)
        else:
            path.unlink()

    def add(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = member_parts(member.name)
        if member.ischr() or member.isblk():
            raise RootfsError(
                f"{member.name!r} is a device node: a template carries none (the node's "
                "kernel mounts devtmpfs on /dev); pack it without ./dev/*"
            )
        if not (member.isdir() or member.isreg() or member.issym() or member.islnk()):
            raise RootfsError(
                f"{member.name!r} is neither a file, a folder nor a link (a FIFO or socket)"
            )
        if not parts:
            if member.isdir():
                self.dirs.append((self.root, member))
                return
            raise RootfsError(f"{member.name!r} names the root itself, which is a folder")
        self.parent(parts, member.name)
        path = self.root.joinpath(*parts)
        if member.isdir():
            if not os.path.isdir(path) or os.path.islink(path):
                self.clear(path)
                path.mkdir(mode=0o755)
            self.dirs.append((path, member))
            return
        self.clear(path)
        self.files.discard(parts)
        if member.isreg():
            if self.size + member.size > self.limit:
                raise RootfsError(
                    f"it unpacks to more than {self.limit} bytes ({MAX_EXPANSION} times its "
                    "size, or 1 GiB): a decompression bomb, not a root file system"
                )
            self._write(archive, member, path)
            self.size += member.size
            self.files.add(parts)
        elif member.issym():
            target = member.linkname
            if not target or (not target.startswith("/") and _climbs_out(parts, target)):
                raise RootfsError(
                    f"symbolic link {member.name!r} -> {target!r} leads out of the root"
                )
            os.symlink(target, path)
        else:  # a hard link: to a regular file met earlier, never to a link or folder
            target = member_parts(member.linkname)
            if target not in self.files:
                raise RootfsError(
                    f"hard link {member.name!r} points at {member.linkname!r}, which is not "
                    "a file earlier in the archive"
                )
            os.link(self.root.joinpath(*target), path, follow_symlinks=False)
            self.files.add(parts)
            return  # it shares the inode (and metadata) of its target
        self._metadata(path, member)

    def _write(self, archive: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
        source = archive.extractfile(member)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(path, flags, 0o600), "wb") as out:
            while source is not None and (chunk := source.read(CHUNK)):
                out.write(chunk)

    def _metadata(self, path: Path, member: tarfile.TarInfo) -> None:
        link = member.issym()
        if self.as_root:
            os.chown(path, member.uid, member.gid, follow_symlinks=False)
        if not link:
            os.chmod(path, member.mode & 0o7777)  # after chown, which clears set-id bits
            for key, value in member.pax_headers.items():
                # File capabilities (ping's cap_net_raw) and ACLs travel as xattrs.
                if key.startswith("SCHILY.xattr."):
                    try:
                        raw = value.encode("utf-8", "surrogateescape")
                        os.setxattr(path, key[len("SCHILY.xattr.") :], raw, follow_symlinks=False)
                    except OSError:
                        pass  # a file system or user that cannot hold it: the file still is
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)

    def finish(self) -> None:
        # Folders last and deepest first: a read-only folder would refuse its
        # children, and each child written changed its folder's mtime.
        for path, member in reversed(self.dirs):
            self._metadata(path, member)


def unpack(archive: Path, root: Path) -> tuple[int, int]:
    """Unpack ``archive`` into the empty folder ``root``; returns (bytes, regular files)."""
    fmt = archive_format(archive)
    limit = max(archive.stat().st_size * MAX_EXPANSION, MIN_UNPACK_LIMIT)
    unpacker = _Unpacker(root, limit)
    members = 0
    try:
        with archive.open("rb") as raw, _open_tar(raw, fmt) as tar:
            for member in tar:
                members += 1
                if members > MAX_ARCHIVE_FILES:
                    raise RootfsError(f"more than {MAX_ARCHIVE_FILES} archive members")
                unpacker.add(tar, member)
    except (tarfile.TarError, EOFError, zstandard.ZstdError) as exc:
        raise RootfsError(f"not a complete {fmt} archive: {exc}") from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        raise RootfsError(f"not a complete {fmt} archive: {exc}") from None
    if members == 0:
        raise RootfsError("the archive is empty")
    unpacker.finish()
    return unpacker.size, len(unpacker.files)
