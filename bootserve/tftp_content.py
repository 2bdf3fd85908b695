"""What a TFTP transfer sends: shared file contents and their DATA packets.

A storm is hundreds of machines asking for the same bootloader in the same
second. The daemon reads each version of a small file once (keyed by path,
device, inode, size and modification time, so a replaced or rewritten file is
read again), and builds its DATA packets once per block size; every transfer
of that file then sends the same ``bytes`` objects, and 500 transfers of a
1 MB file cost one copy of it, not 500.

Files over the cache's per-file limit (kernels, initramfs images a Pi fetches
over TFTP) are not kept: each transfer reads its own file descriptor with
``os.pread``, a window of blocks at a time. Contents are plain ``bytes`` and
not ``mmap``: a file truncated in place under a mapping kills the reader with
SIGBUS, and a boot root is written by people and tools we do not control.

Rendered configs (a few hundred bytes from the decision engine) are wrapped
in a ``Content`` of their own and never cached: each request reflects the
database at that moment.
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from pathlib import Path

DATA_HEADER = struct.Struct("!HH")
OPCODE_DATA = 3
MAX_PACKET_VARIANTS = 4  # block sizes whose packets one content keeps built
MAX_LISTED_PACKETS = 20_000  # past this many blocks (a tiny blksize), packets are built as sent
READ_AHEAD_BYTES = 256 * 1024  # what a large-file reader reads per pread at most


def data_packet(number: int, payload: bytes) -> bytes:
    """A DATA packet for the absolute block ``number`` (the wire number wraps at 65536)."""
    return DATA_HEADER.pack(OPCODE_DATA, number & 0xFFFF) + payload


def netascii(data: bytes) -> bytes:
    """RFC 764 line ends, as fbtftp's NetasciiReader writes them: CR -> CR NUL, LF -> CR LF."""
    return data.replace(b"\r", b"\r\x00").replace(b"\n", b"\r\n")


def block_count(size: int, blksize: int) -> int:
    """Blocks in a transfer: the last one is shorter than blksize, possibly empty."""
    return size // blksize + 1


class Content:
    """Bytes served to any number of transfers; their packets built once per block size."""

    __slots__ = ("data", "_packets")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._packets: dict[int, list[bytes]] = {}

    def size(self) -> int:
        return len(self.data)

    def packets(self, blksize: int) -> list[bytes] | None:
        """Every DATA packet for ``blksize`` (index 0 is block 1), or None past the variant cap.

        The caps keep a client that asks for many odd block sizes, or a tiny
        one (a Python object per 8 bytes), from making the daemon hold many
        copies of a file; such a transfer builds each packet as it sends it.
        """
        built = self._packets.get(blksize)
        blocks = block_count(len(self.data), blksize)
        if (
            built is None
            and len(self._packets) < MAX_PACKET_VARIANTS
            and blocks <= MAX_LISTED_PACKETS
        ):
            data = self.data
            built = [
                data_packet(i + 1, data[i * blksize : (i + 1) * blksize]) for i in range(blocks)
            ]
            self._packets[blksize] = built
        return built

    def packet(self, number: int, blksize: int) -> bytes:
        start = (number - 1) * blksize
        return data_packet(number, self.data[start : start + blksize])

    def reader(self) -> Content:
        """What one transfer reads from: the shared content itself."""
        return self

    def close(self) -> None:
        pass


class FileReader:
    """One transfer's reader of a large file: its own descriptor, a window per pread."""

    __slots__ = ("_fd", "_size", "_first", "_buffer", "_blksize")

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        self._first = 0  # the block number buffered first (0: nothing buffered)
        self._buffer = b""
        self._blksize = 0

    def size(self) -> int:
        return self._size

    def packets(self, blksize: int) -> None:
        return None

    def packet(self, number: int, blksize: int) -> bytes:
        index = number - self._first
        if blksize != self._blksize or not 0 <= index < len(self._buffer) // blksize:
            # Read from this block on, whole blocks, up to READ_AHEAD_BYTES.
            blocks = max(1, READ_AHEAD_BYTES // blksize)
            self._buffer = os.pread(self._fd, blocks * blksize, (number - 1) * blksize)
            self._first, self._blksize, index = number, blksize, 0
        start = index * blksize
        return data_packet(number, self._buffer[start : start + blksize])

    def reader(self) -> FileReader:
        """What one transfer reads from: this reader, its own."""
        return self

    def read_all(self) -> bytes:
        return os.pread(self._fd, self._size, 0)

    def close(self) -> None:
        self._buffer = b""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class ContentCache:
    """Small files by path and version, least recently used first out.

    ``max_file``: files larger than this are read per transfer, never cached.
    ``budget``: bytes of cached file data (counted twice: the packets double
    it) above which the least recently used entries are dropped. An entry that
    transfers still use stays alive in them until they end.
    """

    def __init__(self, max_file: int = 8 * 1024 * 1024, budget: int = 64 * 1024 * 1024) -> None:
        self.max_file = max_file
        self.budget = budget
        self._entries: OrderedDict[Path, tuple[tuple, Content]] = OrderedDict()
        self._held = 0
        self.hits = self.reads = 0

    def open(self, path: Path) -> Content | FileReader:
        """A reader of ``path``'s current version. Raises OSError when it cannot be read."""
        st = os.stat(path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        entry = self._entries.get(path)
        if entry is not None and entry[0] == key:
            self._entries.move_to_end(path)
            self.hits += 1
            return entry[1]
        if entry is not None:
            self._drop(path)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        st = os.fstat(fd)  # the version opened, should the path have changed since
        key, size = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns), st.st_size
        if size > self.max_file:
            return FileReader(fd, size)
        try:
            data = os.pread(fd, size + 1, 0)  # one byte more: a file still growing shows it
        finally:
            os.close(fd)
        self.reads += 1
        content = Content(data)
        if len(data) == st.st_size:  # unchanged while read: worth keeping
            self._entries[path] = (key, content)
            self._held += 2 * len(data)
            while self._held > self.budget and len(self._entries) > 1:
                self._drop(next(iter(self._entries)))
        return content

    def _drop(self, path: Path) -> None:
        _key, content = self._entries.pop(path)
        self._held -= 2 * len(content.data)

    def __len__(self) -> int:
        return len(self._entries)
