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

Each finished transfer is counted and logged by the parent, from the report
its child sends back (see ``bootserve.tftp_metrics``); the parent's own
refusals are counted where they happen. Statistics add a counter increment
per datagram to the parent's loop, and one ``recv``, a few increments and a
log line per finished transfer.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from django.db import close_old_connections, connections
from fbtftp.base_handler import BaseHandler, ResponseData, StringResponseData
from fbtftp.base_server import BaseServer

from .tftp_metrics import ReportChannel, TftpMetrics, TransferReport

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
    """Serves what the parent resolved; never touches the database.

    Constructed in the parent, run in the forked child, which first closes the
    parent's listening sockets (so a restarted daemon can bind them while
    transfers still run) and at the end sends its report to the parent.
    """

    def __init__(self, server_addr, peer, path, options, response, *, kind, reports, inherited=()):
        self._precomputed = response
        self._kind = kind
        self._reports = reports
        self._inherited = inherited
        super().__init__(server_addr, peer, path, options, self._session_done)

    def get_response_data(self) -> ResponseData:
        if self._precomputed is None:
            raise FileNotFoundError(f"{self._path}: not found")
        if isinstance(self._precomputed, Path):
            return FileResponse(self._precomputed)
        return StringResponseData(self._precomputed.decode("latin-1"))

    def run(self) -> None:
        for sock in self._inherited:
            sock.close()
        self._reports.close_receiver()
        super().run()

    def _session_done(self, stats) -> None:
        self._reports.send(TransferReport.from_session(stats, self._kind))


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

    def __init__(
        self,
        address: str,
        port: int,
        resolver: Resolver,
        *,
        retries=5,
        timeout=5,
        metrics: TftpMetrics | None = None,
    ):
        super().__init__(address, port, retries, timeout, server_stats_callback=None)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self._resolver = resolver
        self._recent: dict[tuple, float] = {}
        self.metrics = metrics or TftpMetrics()
        self._reports = ReportChannel()
        self._selector.register(self._reports, selectors.EVENT_READ)
        self._metrics_http = None

    def serve_metrics(self, address: str, port: int) -> tuple[str, int]:
        """Serve ``/metrics`` over HTTP until ``run`` ends; the bound (address, port).

        Raises OSError when the address cannot be bound.
        """
        self._metrics_http = self.metrics.serve(address, port)
        return self._metrics_http.server_address[:2]

    def run(self, run_once: bool = False) -> None:
        try:
            super().run(run_once)
        finally:
            self._reports.close()
            if self._metrics_http is not None:
                self._metrics_http.shutdown()
                self._metrics_http.server_close()

    def run_once(self) -> None:
        for key, mask in self._selector.select():
            if not mask & selectors.EVENT_READ:
                continue
            if key.fileobj is self._reports:
                for report in self._reports.receive():
                    self._transfer_done(report)
            else:
                self.on_new_data()

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
            self.metrics.write_refused.inc()
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
            self.metrics.malformed.inc()
            self._send_error(peer, 0, f"Unknown mode {mode!r}")
            return
        key = (peer, raw_path)
        now = time.monotonic()
        self._recent = {k: t for k, t in self._recent.items() if now - t < DUPLICATE_WINDOW}
        if key in self._recent:
            self.metrics.duplicates.inc()  # a retransmitted RRQ: the transfer runs already
            return
        self._recent[key] = now
        options = OrderedDict(
            [("mode", mode), ("default_timeout", self._timeout), ("retries", self._retries)]
        )
        for i in range(2, len(words) - 1, 2):
            options[words[i].lower()] = words[i + 1]
        path = normalise_path(raw_path)
        if path is None:
            self.metrics.paths_refused.inc()
            log.warning("tftp: refused path %r from %s", raw_path[:80], peer[0])
            self._send_error(peer, ERR_ACCESS, "Path refused")
            return
        response = self._resolve(path, peer)
        if response is None:
            kind = "missing"
        else:
            kind = "static" if isinstance(response, Path) else "rendered"
        inherited = [self._listener]
        if self._metrics_http is not None:
            inherited.append(self._metrics_http.socket)
        try:
            handler = PrecomputedHandler(
                (self._address, self._port),
                peer,
                path,
                clean_options(options),
                response,
                kind=kind,
                reports=self._reports,
                inherited=inherited,
            )
            handler.daemon = True
            handler.start()
        except Exception:  # never let one request take the server down
            log.exception("tftp: could not start a transfer of %s for %s", path, peer[0])
            return
        self.metrics.started.labels(kind).inc()

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
        self.metrics.malformed.inc()
        log.info("tftp: dropped datagram from %s (%s)", peer[0], why)

    def _send_error(self, peer: tuple, code: int, message: str) -> None:
        packet = struct.pack("!HH", OPCODE_ERROR, code) + message.encode("ascii") + b"\x00"
        try:
            self._listener.sendto(packet, peer)
        except OSError:
            pass

    def _transfer_done(self, report: TransferReport) -> None:
        """Count and log one finished transfer: one line per transfer."""
        self.metrics.record(report)
        if report.failed:
            outcome = f"failed error={report.error_code} message={report.error!r}"
        else:
            outcome = "ok"
        log.info(
            "tftp: transfer peer=%s:%s path=%s kind=%s bytes=%d seconds=%.3f retransmits=%d "
            "blksize=%d outcome=%s",
            report.peer,
            report.port,
            report.path,
            report.kind,
            report.bytes_sent,
            report.seconds,
            report.retransmits,
            report.blksize,
            outcome,
        )
