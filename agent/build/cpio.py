"""A newc ("070701") cpio archive, written reproducibly.

Entries are sorted, owned by root, stamped with one fixed time and numbered
in order, and the gzip header carries no time or name: two builds from the
same files give the same bytes, so the initramfs's SHA-256 identifies what
is in it.
"""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

TRAILER = "TRAILER!!!"


def _header(ino: int, mode: int, nlink: int, mtime: int, size: int, name: bytes) -> bytes:
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, len(name) + 1, 0)
    return b"070701" + b"".join(f"{v:08X}".encode() for v in fields)


def _pad(length: int) -> bytes:
    return b"\0" * ((4 - length % 4) % 4)


def entries(root: Path) -> list[Path]:
    """Every path under ``root``, sorted (directories before their contents)."""
    return sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix())


def write(root: Path, out: Path, mtime: int) -> None:
    """Archive the tree at ``root`` into ``out`` (gzip), as the kernel unpacks it."""
    with (
        out.open("wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=9, mtime=0) as archive,
    ):
        ino = 0
        for path in entries(root):
            info = path.lstat()
            name = path.relative_to(root).as_posix().encode()
            ino += 1
            mode = info.st_mode
            if stat.S_ISLNK(mode):
                data = os.readlink(path).encode()
                mode = stat.S_IFLNK | 0o777
            elif stat.S_ISDIR(mode):
                data = b""
                mode = stat.S_IFDIR | 0o755
            elif stat.S_ISREG(mode):
                data = path.read_bytes()
                mode = stat.S_IFREG | (0o755 if mode & 0o111 else 0o644)
            else:
                continue  # devices come from devtmpfs at boot
            nlink = 2 if stat.S_ISDIR(mode) else 1
            head = _header(ino, mode, nlink, mtime, len(data), name)
            archive.write(head + name + b"\0" + _pad(len(head) + len(name) + 1))
            archive.write(data + _pad(len(data)))
        name = TRAILER.encode()
        head = _header(0, 0, 1, 0, 0, name)
        archive.write(head + name + b"\0" + _pad(len(head) + len(name) + 1))


def read(path: Path) -> dict[str, tuple[int, bytes]]:
    """The archive's entries: name -> (mode, data). For tests and checks."""
    blob = gzip.decompress(path.read_bytes())
    out: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        if blob[pos : pos + 6] != b"070701":
            raise ValueError(f"not a newc header at {pos}")
        fields = [int(blob[pos + 6 + i * 8 : pos + 14 + i * 8], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        pos += 110
        name = blob[pos : pos + namesize - 1].decode()
        pos += namesize + len(_pad(110 + namesize))
        data = blob[pos : pos + size]
        pos += size + len(_pad(size))
        if name == TRAILER:
            return out
        out[name] = (mode, data)
