"""The TFTP daemon: fbtftp's server loop and request parsing, an event loop for transfers.

Stock fbtftp 0.5 forks one process per transfer. In a storm (a rack powering
on: hundreds of read requests in the same second) that is hundreds of Python
processes at once: memory grows with each, children go unreaped, and the
transfers starve each other of CPU. Here ``BootServer`` keeps fbtftp's
``BaseServer`` (its listening socket, its ``run`` loop, RRQ parsing into path,
mode and options) and replaces the fork with one non-blocking event loop in
one process:

- every transfer (``bootserve.tftp_transfer.Transfer``) has its own UDP
  socket, connected to its client and registered in the same epoll as the
  listening socket; retransmission deadlines sit in one heap, so an idle or
  vanished client costs a socket and a heap entry, never a blocked loop;
- file contents come from a shared cache (``bootserve.tftp_content``): 500
  transfers of one bootloader send the same prebuilt packets;
- the number of concurrent transfers is bounded (``max_transfers``); past it,
  read requests are dropped (not answered with an error, which would make a
  PXE ROM give up: the client resends its request after its own timeout, when
  a slot may be free), counted, and logged at most once per ten seconds;
- the listening socket's receive buffer is sized for a storm
  (``SO_RCVBUFFORCE`` as root, past ``net.core.rmem_max``), and the size
  actually granted is logged.

A file under the boot root is found in the loop, without any database query.
A name that may be a config decided from the database (PXELINUX, GRUB,
Raspberry Pi) is answered by a helper process while the loop goes on serving
(``bootserve.tftp_resolver``); the loop itself never imports Django. Given a
plain resolver function instead (the tests do), the loop calls it in place.
Each finished transfer of a boot file, and each refused read request, is
reported to the resolver for a boot record (``tftp_resolver.transfer_record``
says which; the helper writes them).

Hardening over stock fbtftp, which dies on a one-byte datagram: malformed
datagrams are dropped and counted; write requests get an "access violation"
error; a repeated read request from the same client port never starts a
second transfer; blksize is clamped to 8-65464, windowsize to 1-64, and a
non-numeric option is ignored rather than crashing the transfer.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import logging
import resource
import select
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from fbtftp.base_server import BaseServer

from .tftp_content import Content, ContentCache, FileReader, netascii
from .tftp_metrics import TftpMetrics, TransferReport
from .tftp_resolver import (
    HelperResolver,
    InlineResolver,
    Recorder,
    Result,
    refusal_record,
    static_file,
    transfer_record,
)
from .tftp_transfer import Transfer, error_packet

__all__ = ("BootServer", "HelperResolver", "clean_options", "normalise_path", "static_file")

log = logging.getLogger("pureboot.tftp")

OPCODE_RRQ, OPCODE_WRQ, OPCODE_ERROR = 1, 2, 5
ERR_NOT_FOUND, ERR_ACCESS = 1, 2
MIN_BLKSIZE, MAX_BLKSIZE = 8, 65464
MAX_WINDOWSIZE = 64
MAX_PATH = 255
DUPLICATE_WINDOW = 5.0  # seconds a (peer, path) pair counts as the same request
DEFAULT_MAX_TRANSFERS = 1000
# One address may run this many transfers at once: a PXE client fetches a few
# files one after the other, a host that opens hundreds is a flood.
DEFAULT_MAX_PER_CLIENT = 16
DEFAULT_RCVBUF = 4 * 1024 * 1024
BUSY_LOG_INTERVAL = 10.0  # seconds between two "bound reached" log lines
REQUESTS_PER_WAKEUP = 256  # read requests taken from the listening socket in one go
POLL_CAP = 1.0  # longest sleep, so a stop request is noticed
SPIN_MAX_TRANSFERS = 4  # with this many transfers or fewer, poll briefly before sleeping
SPIN_SECONDS = 0.0002
SPIN_MISS_LIMIT, SPIN_RETRY_EVERY = 8, 128

Resolver = Callable[[str, tuple], Result]


def clean_options(options: OrderedDict) -> OrderedDict:
    """The options we negotiate, with values we accept; anything else is left out.

    blksize is clamped to 8-65464 (RFC 2348) and windowsize to 1-64 (RFC 7440
    lets a server answer less than asked); a timeout outside 1-255 seconds
    (RFC 2349), a windowsize below 1 and any non-numeric value drop the option.
    """
    out = OrderedDict()
    for key, value in options.items():
        if key == "mode":
            out[key] = value
            continue
        if key in ("blksize", "timeout", "tsize", "windowsize"):
            try:
                number = int(value)
            except (TypeError, ValueError):
                continue
            if key == "blksize":
                number = min(max(number, MIN_BLKSIZE), MAX_BLKSIZE)
            if key == "timeout" and not 1 <= number <= 255:
                continue
            if key == "windowsize":
                if number < 1:
                    continue
                number = min(number, MAX_WINDOWSIZE)
            if key == "tsize" and number < 0:
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


def size_receive_buffer(sock: socket.socket, wanted: int) -> int:
    """Ask for ``wanted`` bytes of receive buffer; the size the kernel granted.

    ``SO_RCVBUFFORCE`` (root, CAP_NET_ADMIN) goes past ``net.core.rmem_max``;
    otherwise ``SO_RCVBUF`` is capped there. Linux reports twice the size asked
    (it counts its bookkeeping), so the figure is halved to compare.
    """
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, wanted)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2


def raise_open_file_limit(needed: int) -> int:
    """Raise the soft limit on open files towards ``needed``; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class BootServer(BaseServer):
    """fbtftp's server, serving every transfer from one event loop."""

    def __init__(
        self,
        address: str,
        port: int,
        resolver: Resolver | HelperResolver | InlineResolver,
        *,
        retries: int = 5,
        timeout: int = 5,
        metrics: TftpMetrics | None = None,
        max_transfers: int = DEFAULT_MAX_TRANSFERS,
        max_per_client: int = DEFAULT_MAX_PER_CLIENT,
        rcvbuf: int = DEFAULT_RCVBUF,
        cache: ContentCache | None = None,
        recorder: Recorder | None = None,
    ):
        super().__init__(address, port, retries, timeout, server_stats_callback=None)
        self.rcvbuf = size_receive_buffer(self._listener, rcvbuf)
        if self.rcvbuf < rcvbuf:
            log.warning(
                "tftp: listening socket receive buffer %d bytes, asked %d (not root: capped "
                "by net.core.rmem_max); a storm may lose read requests",
                self.rcvbuf,
                rcvbuf,
            )
        else:
            log.info("tftp: listening socket receive buffer %d bytes", self.rcvbuf)
        if not hasattr(resolver, "resolve"):
            resolver = InlineResolver(resolver, recorder)
        self._resolver = resolver
        self._watched: dict[int, Callable[[], None]] = {}
        self._starting: set[tuple] = set()  # requests waiting for the database helper
        self.metrics = metrics if metrics is not None else TftpMetrics()
        self.cache = cache if cache is not None else ContentCache()
        self.max_transfers = max_transfers
        self.max_per_client = max_per_client
        self._per_client: dict[str, int] = {}  # address -> transfers starting or running
        self._per_client_logged: dict[str, float] = {}
        self._listener_fd = self._listener.fileno()
        self._poller = select.epoll()
        self._poller.register(self._listener_fd, select.EPOLLIN)
        self._by_fd: dict[int, Transfer] = {}
        self._by_request: dict[tuple, Transfer] = {}
        self._key_of: dict[int, tuple] = {}
        self._recent: OrderedDict[tuple, float] = OrderedDict()
        self._timers: list[tuple[float, int, Transfer]] = []
        self._sequence = itertools.count()
        self._busy_dropped = 0
        self._loops = self._spin_misses = 0
        self._busy_logged = -BUSY_LOG_INTERVAL
        self._metrics_http = None
        resolver.attach(self._watch, self._unwatch)

    def _watch(self, fd: int, callback: Callable[[], None]) -> None:
        self._watched[fd] = callback
        self._poller.register(fd, select.EPOLLIN)

    def _unwatch(self, fd: int) -> None:
        self._watched.pop(fd, None)
        try:
            self._poller.unregister(fd)
        except (OSError, ValueError):
            pass

    @property
    def active(self) -> int:
        """Transfers running now."""
        return len(self._by_fd)

    def serve_metrics(self, address: str, port: int) -> tuple[str, int]:
        """Serve ``/metrics`` over HTTP until ``run`` ends; the bound (address, port).

        Raises OSError when the address cannot be bound.
        """
        self._metrics_http = self.metrics.serve(address, port)
        return self._metrics_http.server_address[:2]

    def restart_stats_timer(self, run_once: bool = False) -> None:
        """fbtftp's periodic statistics thread: not used, the metrics are Prometheus'."""

    def run(self, run_once: bool = False) -> None:
        gc.freeze()  # Django's objects, allocated once, need not be scanned again
        try:
            super().run(run_once)
        finally:
            for transfer in list(self._by_fd.values()):
                transfer.close("Server shutting down")
            self._resolver.close()
            self._poller.close()
            if self._metrics_http is not None:
                self._metrics_http.shutdown()
                self._metrics_http.server_close()

    # --- the loop -------------------------------------------------------------

    def run_once(self) -> None:
        timers = self._timers
        timeout = POLL_CAP
        if timers:
            timeout = min(max(timers[0][0] - time.monotonic(), 0.0), POLL_CAP)
        events = ()
        if 0 < len(self._by_fd) <= SPIN_MAX_TRANSFERS and timeout > 0:
            self._loops += 1
            if self._spin_misses < SPIN_MISS_LIMIT or self._loops % SPIN_RETRY_EVERY == 0:
                events = self._spin()
                self._spin_misses = 0 if events else self._spin_misses + 1
        if not events:
            try:
                events = self._poller.poll(timeout)
            except InterruptedError:
                events = ()
        by_fd = self._by_fd
        for fd, _mask in events:
            if fd == self._listener_fd:
                self.on_new_data()
                continue
            transfer = by_fd.get(fd)
            if transfer is None:
                callback = self._watched.get(fd)
                if callback is not None:
                    try:
                        callback()
                    except Exception:
                        log.exception("tftp: the database helper's answer failed")
            else:
                try:
                    transfer.on_readable()  # errors (EPOLLERR) surface in its recv
                except Exception:  # a bug in one transfer must not stop the others
                    self._crashed(transfer)
        if timers and timers[0][0] <= time.monotonic():
            self._expire(time.monotonic())

    def _spin(self) -> list:
        """Poll without sleeping for up to SPIN_SECONDS: a lock-step client's next ACK.

        With a few transfers running, the loop mostly waits for one ACK at a
        time; sleeping and being woken for each costs more than the wait on a
        virtual machine. Spinning briefly first (as the kernel's busy_poll does
        for network cards, which loopback and bridges lack) serves a lone
        large transfer severalfold faster on this project's test machines, for
        the CPU of that wait. Clients farther away than the spin (a real
        network's round trip) make it miss: after SPIN_MISS_LIMIT misses in a
        row the loop only tries again every SPIN_RETRY_EVERY wake-ups.
        """
        poll, deadline = self._poller.poll, time.monotonic() + SPIN_SECONDS
        while True:
            events = poll(0)
            if events or time.monotonic() >= deadline:
                return events

    def _expire(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, transfer = heapq.heappop(timers)
            if transfer.state == "finished":
                continue
            if transfer.deadline <= now:
                try:
                    transfer.on_timer(now)
                except Exception:
                    self._crashed(transfer)
                if transfer.state == "finished":
                    continue
            heapq.heappush(timers, (transfer.deadline, next(self._sequence), transfer))

    def on_new_data(self) -> None:
        """Read requests waiting on the listening socket (fbtftp's hook, here not forking)."""
        for _ in range(REQUESTS_PER_WAKEUP):
            try:
                data, peer = self._listener.recvfrom(65536)
            except OSError:  # BlockingIOError: nothing more waiting
                return
            try:
                self.on_request(data, peer)
            except Exception:  # never let one request take the server down
                log.exception("tftp: read request from %s failed", peer[0])

    def _crashed(self, transfer: Transfer) -> None:
        log.exception("tftp: transfer of %s for %s failed", transfer.path, transfer.peer[0])
        transfer.close("Internal error")

    # --- read requests --------------------------------------------------------

    def on_request(self, data: bytes, peer: tuple) -> None:
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
        if key in self._by_request or key in self._starting or self._seen_recently(key, now):
            self.metrics.duplicates.inc()  # a retransmitted RRQ: the transfer runs already
            return
        path = normalise_path(raw_path)
        if path is None:
            self.metrics.paths_refused.inc()
            log.warning("tftp: refused path %r from %s", raw_path[:80], peer[0])
            self._resolver.record(refusal_record(peer[0], raw_path, "path refused"))
            self._send_error(peer, ERR_ACCESS, "Path refused")
            return
        if len(self._by_fd) + self._resolver.pending() >= self.max_transfers:
            self._refuse_busy(peer, path, now)
            return
        if self._per_client.get(peer[0], 0) >= self.max_per_client:
            self._refuse_per_client(peer, path, now)
            return
        self._recent[key] = now
        options = OrderedDict([("mode", mode)])
        for i in range(2, len(words) - 1, 2):
            options[words[i].lower()] = words[i + 1]
        self._start(key, peer, path, clean_options(options), now)

    def _seen_recently(self, key: tuple, now: float) -> bool:
        recent = self._recent
        while recent:
            oldest, when = next(iter(recent.items()))
            if now - when < DUPLICATE_WINDOW:
                break
            del recent[oldest]
        return key in recent

    def _refuse_busy(self, peer: tuple, path: str, now: float) -> None:
        self.metrics.refused_busy.inc()
        self._busy_dropped += 1
        if now - self._busy_logged >= BUSY_LOG_INTERVAL:
            log.warning(
                "tftp: %d transfers running, the bound (--max-transfers, "
                "PUREBOOT_TFTP_MAX_TRANSFERS); dropped %d read request(s) since the last such "
                "line, the latest for %s from %s (clients resend theirs)",
                len(self._by_fd),
                self._busy_dropped,
                path,
                peer[0],
            )
            self._busy_logged, self._busy_dropped = now, 0

    def _refuse_per_client(self, peer: tuple, path: str, now: float) -> None:
        """One address at its bound: log, count, and say so (an ERROR, not silence)."""
        last = self._per_client_logged.get(peer[0], -BUSY_LOG_INTERVAL)
        if now - last >= BUSY_LOG_INTERVAL:
            if len(self._per_client_logged) > 4096:
                self._per_client_logged.clear()
            self._per_client_logged[peer[0]] = now
            log.warning(
                "tftp: %s has %d transfers running, its bound (PUREBOOT_TFTP_MAX_PER_CLIENT); "
                "refused %s (logged at most once per %d s per address)",
                peer[0],
                self._per_client.get(peer[0], 0),
                path,
                BUSY_LOG_INTERVAL,
            )
            why = "too many transfers from this address (recorded once per 10 s)"
            self._resolver.record(refusal_record(peer[0], path, why))
        self.metrics.refused_per_client.inc()
        self._send_error(peer, ERR_ACCESS, "Too many transfers from your address")

    def _client_done(self, address: str) -> None:
        left = self._per_client.get(address, 0) - 1
        if left > 0:
            self._per_client[address] = left
        else:
            self._per_client.pop(address, None)

    def _start(self, key: tuple, peer: tuple, path: str, options: OrderedDict, now: float) -> None:
        self._starting.add(key)
        self._per_client[peer[0]] = self._per_client.get(peer[0], 0) + 1

        def resolved(result: Result) -> None:
            self._starting.discard(key)
            self._begin(key, peer, path, options, result, now)

        self._resolver.resolve(path, peer, resolved)

    def _begin(self, key, peer, path, options: OrderedDict, result: Result, received) -> None:
        """Start the transfer the resolver decided (``received``: when the request came)."""
        reader, kind = self._reader(result, options.get("mode") == "netascii")
        if reader is None:
            self._client_done(peer[0])
            self.metrics.started.labels(kind).inc()
            self._send_error(peer, ERR_NOT_FOUND, "File not found", fresh_port=True)
            self._log_and_count(
                TransferReport(
                    peer=str(peer[0]), port=int(peer[1]), path=path, kind=kind, bytes_sent=0,
                    seconds=round(time.monotonic() - received, 6), retransmits=0, blksize=512,
                    windowsize=1,
                    error_code=ERR_NOT_FOUND, error=f"{path}: not found",
                )
            )  # fmt: skip
            return
        try:
            sock = socket.socket(self._family, socket.SOCK_DGRAM)
        except OSError as exc:  # EMFILE: the client resends its request
            reader.close()
            self._client_done(peer[0])
            log.error("tftp: no socket for %s from %s: %s", path, peer[0], exc)
            return
        try:
            sock.setblocking(False)
            sock.bind((self._address, 0))
            sock.connect(peer)
            transfer = Transfer(
                sock, peer, path, kind, reader, options,
                timeout=self._timeout, retries=self._retries, started=received,
                done=self._transfer_done, dropped=self._drop,
            )  # fmt: skip
            self._poller.register(sock.fileno(), select.EPOLLIN)
        except Exception:  # never let one request take the server down
            sock.close()
            reader.close()
            self._client_done(peer[0])
            log.exception("tftp: could not start a transfer of %s for %s", path, peer[0])
            return
        self._by_fd[sock.fileno()] = transfer
        self._by_request[key] = transfer
        self._key_of[sock.fileno()] = key
        self.metrics.started.labels(kind).inc()
        self.metrics.active.inc()
        heapq.heappush(self._timers, (transfer.deadline, next(self._sequence), transfer))
        transfer.start()

    def _reader(self, result: Result, ascii_mode: bool) -> tuple:
        """(reader or None, kind) for what the resolver decided; the cache reads files."""
        if result is None:
            return None, "missing"
        if isinstance(result, Path):
            try:
                reader = self.cache.open(result).reader()
            except OSError as exc:
                log.warning("tftp: cannot read %s: %s", result, exc)
                return None, "missing"
            kind = "static"
        else:
            reader, kind = Content(bytes(result)), "rendered"
        if ascii_mode:
            data = reader.read_all() if isinstance(reader, FileReader) else reader.data
            reader.close()
            reader = Content(netascii(data))
        return reader, kind

    def _transfer_done(self, transfer: Transfer) -> None:
        fd = transfer.sock.fileno()
        self._poller.unregister(fd)
        transfer.sock.close()
        del self._by_fd[fd]
        self._by_request.pop(self._key_of.pop(fd), None)
        self._client_done(transfer.peer[0])
        self._log_and_count(transfer.report())
        self.metrics.active.dec()

    def _drop(self, peer: tuple, why: str) -> None:
        self.metrics.malformed.inc()
        log.info("tftp: dropped datagram from %s (%s)", peer[0], why)

    def _send_error(self, peer: tuple, code: int, message: str, fresh_port: bool = False) -> None:
        """An ERROR from the listening port, or (answering a read request) from a new one."""
        packet = error_packet(code, message)
        try:
            if not fresh_port:
                self._listener.sendto(packet, peer)
                return
            with socket.socket(self._family, socket.SOCK_DGRAM) as sock:
                sock.bind((self._address, 0))
                sock.sendto(packet, peer)
        except OSError:
            pass

    def _log_and_count(self, report: TransferReport) -> None:
        """Log, then count, one finished transfer: one line per transfer.

        The line comes first, so whoever sees a counter move finds its line.
        """
        if report.failed:
            outcome = f"failed error={report.error_code} message={report.error!r}"
        else:
            outcome = "ok"
        log.info(
            "tftp: transfer peer=%s:%s path=%s kind=%s bytes=%d seconds=%.3f retransmits=%d "
            "blksize=%d windowsize=%d outcome=%s",
            report.peer,
            report.port,
            report.path,
            report.kind,
            report.bytes_sent,
            report.seconds,
            report.retransmits,
            report.blksize,
            report.windowsize,
            outcome,
        )
        self.metrics.record(report)
        fields = transfer_record(report)
        if fields is not None:
            self._resolver.record(fields)
