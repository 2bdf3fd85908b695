"""The TFTP daemon: fbtftp's packet handling, PureBoot's files and rules.

The parent process decides every request before it forks: it validates the
datagram, resolves the path (a static file under the boot root, or a
config rendered by the decision engine), and closes its database connection
so no socket is ever shared with a child. The forked handler only sends
bytes it was given.

Hardening over stock fbtftp 0.5, which dies on a one-byte datagram:
malformed datagrams are dropped and counted; write requests get an "access
violation" error; a repeated read request from the same client port never
starts a second transfer; blksize is clamped to 8-65464 and a non-numeric
option is ignored rather than crashing the transfer.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from django.db import close_old_connections, connections
from fbtftp.base_handler import BaseHandler, ResponseData, StringResponseData
from fbtftp.base_server import BaseServer

log = logging.getLogger("pureboot.tftp")

OPCODE_RRQ, OPCODE_WRQ, OPCODE_ERROR = 1, 2, 5
ERR_NOT_FOUND, ERR_ACCESS = 1, 2
MIN_BLKSIZE, MAX_BLKSIZE = 8, 65464
MAX_PATH = 255
DUPLICATE_WINDOW = 5.0  # seconds a (peer, path) pair counts as the same request

Resolver = Callable[[str, tuple], bytes | Path | None]


class FileResponse(ResponseData):
    """A file opened by the parent; the child reads it."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self._size = os.fstat(self._file.fileno()).st_size

    def read(self, n: int) -> bytes:
        return self._file.read(n)

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        self._file.close()


class PrecomputedHandler(BaseHandler):
    """Serves what the parent resolved; never touches the database."""

    def __init__(self, server_addr, peer, path, options, stats_callback, response):
        self._precomputed = response
        super().__init__(server_addr, peer, path, options, stats_callback)

    def get_response_data(self) -> ResponseData:
        if self._precomputed is None:
            raise FileNotFoundError(f"{self._path}: not found")
        if isinstance(self._precomputed, Path):
            return FileResponse(self._precomputed)
        return StringResponseData(self._precomputed.decode("latin-1"))


def clean_options(options: OrderedDict) -> OrderedDict:
    """Drop options fbtftp would crash on; clamp blksize (RFC 2348) and timeout (RFC 2349)."""
    out = OrderedDict()
    for key, value in options.items():
        if key in ("mode", "default_timeout", "retries"):
            out[key] = value
            continue
        if key in ("blksize", "timeout", "tsize"):
            try:
                number = int(value)
            except (TypeError, ValueError):
                continue
            if key == "blksize":
                number = min(max(number, MIN_BLKSIZE), MAX_BLKSIZE)
            if key == "timeout" and not 1 <= number <= 255:
                continue
            out[key] = str(number)
    return out


def normalise_path(raw: str) -> str | None:
    """The request path relative to the boot root, or None when it is refused."""
    if not raw or len(raw) > MAX_PATH or "\x00" in raw:
        return None
    path = raw.replace("\\", "/").lstrip("/")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    if any(ord(c) < 32 for c in path):
        return None
    return "/".join(parts)


def static_file(root: Path, relative: str) -> Path | None:
    """A regular file under ``root`` (symlinks leading outside are refused)."""
    root = root.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


class BootServer(BaseServer):
    """fbtftp server whose parent validates and decides, and whose children only send."""

    def __init__(self, address: str, port: int, resolver: Resolver, *, retries=5, timeout=5):
        super().__init__(address, port, retries, timeout, server_stats_callback=None)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self._resolver = resolver
        self._recent: dict[tuple, float] = {}
        self.counters = {"requests": 0, "dropped": 0, "refused": 0, "duplicates": 0}

    def on_new_data(self) -> None:
        try:
            data, peer = self._listener.recvfrom(65536)
        except OSError:
            return
        if len(data) < 4:
            self._drop(peer, "short datagram")
            return
        (opcode,) = struct.unpack("!H", data[:2])
        if opcode == OPCODE_WRQ:
            self.counters["refused"] += 1
            self._send_error(peer, ERR_ACCESS, "This server is read-only")
            return
        if opcode != OPCODE_RRQ:
            self._drop(peer, f"opcode {opcode}")
            return
        tokens = data[2:].split(b"\x00")
        if tokens and tokens[-1] == b"":
            tokens = tokens[:-1]
        if len(tokens) < 2 or len(tokens) % 2:
            self._drop(peer, "malformed request")
            return
        try:
            words = [t.decode("ascii") for t in tokens]
        except UnicodeDecodeError:
            self._drop(peer, "non-ASCII request")
            return
        raw_path, mode = words[0], words[1].lower()
        if mode not in ("octet", "netascii"):
            self._send_error(peer, 0, f"Unknown mode {mode!r}")
            return
        key = (peer, raw_path)
        now = time.monotonic()
        self._recent = {k: t for k, t in self._recent.items() if now - t < DUPLICATE_WINDOW}
        if key in self._recent:
            self.counters["duplicates"] += 1  # a retransmitted RRQ: the transfer runs already
            return
        self._recent[key] = now
        self.counters["requests"] += 1
        options = OrderedDict(
            [("mode", mode), ("default_timeout", self._timeout), ("retries", self._retries)]
        )
        for i in range(2, len(words) - 1, 2):
            options[words[i].lower()] = words[i + 1]
        path = normalise_path(raw_path)
        if path is None:
            self.counters["refused"] += 1
            log.warning("tftp: refused path %r from %s", raw_path[:80], peer[0])
            self._send_error(peer, ERR_ACCESS, "Path refused")
            return
        response = self._resolve(path, peer)
        try:
            handler = PrecomputedHandler(
                (self._address, self._port),
                peer,
                path,
                clean_options(options),
                self._session_done,
                response,
            )
            handler.daemon = True
            handler.start()
        except Exception:  # never let one request take the server down
            log.exception("tftp: could not start a transfer of %s for %s", path, peer[0])

    def _resolve(self, path: str, peer: tuple) -> bytes | Path | None:
        close_old_connections()
        try:
            return self._resolver(path, peer)
        except Exception:
            log.exception("tftp: resolving %s for %s failed", path, peer[0])
            return None
        finally:
            # The child is forked next: it must not inherit an open DB socket.
            connections.close_all()

    def _drop(self, peer: tuple, why: str) -> None:
        self.counters["dropped"] += 1
        log.info("tftp: dropped datagram from %s (%s)", peer[0], why)

    def _send_error(self, peer: tuple, code: int, message: str) -> None:
        packet = struct.pack("!HH", OPCODE_ERROR, code) + message.encode("ascii") + b"\x00"
        try:
            self._listener.sendto(packet, peer)
        except OSError:
            pass

    @staticmethod
    def _session_done(stats) -> None:
        log.info(
            "tftp: %s %s bytes=%s packets=%s retransmits=%s error=%s duration=%.3fs",
            stats.peer[0] if stats.peer else "?",
            stats.file_path,
            stats.bytes_sent,
            stats.packets_sent,
            stats.retransmits,
            stats.error or "-",
            stats.duration(),
        )
