"""TFTP statistics: from the forked transfer processes to the parent's Prometheus registry.

fbtftp forks one process per transfer and calls the session stats callback in
that child when the transfer ends; a counter incremented there dies with the
child. So the child sends one small JSON datagram (a ``TransferReport``) to the
parent over a Unix datagram socket pair created before any fork, and the parent,
which owns the only registry, reads it in its select loop, counts it and logs it.

Why a socket pair rather than prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``): multiprocess mode keeps one set of mmap files
per process id, so a daemon that forks per transfer grows the directory by a
file per transfer, and every scrape re-reads all of them for the life of the
daemon (counters cannot be dropped when a process dies, or they would go
backwards). It also needs a private directory wiped at each start and changes
how every metric type is collected. The socket pair needs nothing on disk, no
clean-up and no shared state: a datagram arrives whole or not at all, and the
parent pays one ``recv`` and a few increments per finished transfer. The
children never touch the registry, so a registry lock that the HTTP thread
happens to hold at the moment of a fork is never needed in the child.

A report can be lost only when the parent is gone or has not read its socket
for the child's send timeout; the child then logs a warning, and the
transfer shows up as started but neither completed nor failed.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

log = logging.getLogger("pureboot.tftp")

# What a transfer served: a file under the boot root, a config rendered by the
# decision engine, or nothing (the request got "file not found").
KINDS = ("static", "rendered", "missing")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SEND_TIMEOUT = 2.0  # seconds a finishing child waits for room in the parent's queue
MAX_ERROR_TEXT = 200


@dataclass(frozen=True)
class TransferReport:
    """What one finished transfer tells the parent."""

    peer: str
    port: int
    path: str
    kind: str
    bytes_sent: int  # data payload put on the wire, retransmissions included
    seconds: float
    retransmits: int
    blksize: int
    error_code: int | None = None  # None: the transfer completed
    error: str = ""

    @classmethod
    def from_session(cls, stats, kind: str) -> TransferReport:
        """Build a report from fbtftp's ``SessionStats`` (in the child)."""
        error = stats.error or {}
        peer = stats.peer or ("?", 0)
        return cls(
            peer=str(peer[0]),
            port=int(peer[1]),
            path=stats.file_path,
            kind=kind,
            bytes_sent=stats.bytes_sent,
            seconds=round(stats.duration(), 6),
            retransmits=stats.retransmits,
            blksize=stats.blksize,
            error_code=error.get("error_code") if error else None,
            error=str(error.get("error_message", ""))[:MAX_ERROR_TEXT],
        )

    @property
    def failed(self) -> bool:
        return self.error_code is not None

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> TransferReport:
        """Raises ValueError or TypeError on anything that is not an encoded report."""
        fields = json.loads(data)
        if not isinstance(fields, dict):
            raise ValueError("report is not an object")
        return cls(**fields)


class ReportChannel:
    """A Unix datagram socket pair: children send reports, the parent receives them.

    Create it before the first fork. The receiving end is non-blocking and has a
    ``fileno()``, so the parent's selector can wait on it.
    """

    def __init__(self, send_timeout: float = SEND_TIMEOUT) -> None:
        self._rx, self._tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._rx.setblocking(False)
        self._tx.settimeout(send_timeout)

    def fileno(self) -> int:
        return self._rx.fileno()

    def send(self, report: TransferReport) -> None:
        """Called in the child; never raises."""
        try:
            self._tx.send(report.encode())
        except OSError as exc:
            log.warning("tftp: statistics of %s for %s lost: %s", report.path, report.peer, exc)

    def receive(self) -> Iterator[TransferReport]:
        """Every report waiting now (in the parent); never blocks."""
        while True:
            try:
                data = self._rx.recv(65536)
            except OSError:  # BlockingIOError: nothing more waiting
                return
            try:
                yield TransferReport.decode(data)
            except (ValueError, TypeError) as exc:
                log.warning("tftp: unreadable transfer report dropped: %s", exc)

    def close_receiver(self) -> None:
        """In a child: it only sends."""
        self._rx.close()

    def close(self) -> None:
        self._rx.close()
        self._tx.close()


class TftpMetrics:
    """The daemon's Prometheus metrics, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.started = Counter(
            "pureboot_tftp_transfers_started",
            "Transfers handed to a transfer process, by what they serve.",
            ["kind"],
            registry=r,
        )
        self.completed = Counter(
            "pureboot_tftp_transfers_completed",
            "Transfers whose last block the client acknowledged.",
            ["kind"],
            registry=r,
        )
        self.failed = Counter(
            "pureboot_tftp_transfers_failed",
            "Transfers that ended with a TFTP error (not found, timeout, client abort).",
            ["kind"],
            registry=r,
        )
        self.bytes_sent = Counter(
            "pureboot_tftp_sent_bytes",
            "Data payload bytes sent, retransmissions included.",
            ["kind"],
            registry=r,
        )
        self.retransmits = Counter(
            "pureboot_tftp_retransmits",
            "Blocks sent again after the client did not acknowledge them in time.",
            ["kind"],
            registry=r,
        )
        self.duration = Histogram(
            "pureboot_tftp_transfer_duration_seconds",
            "Time from the read request to the end of the transfer.",
            ["kind"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.malformed = Counter(
            "pureboot_tftp_malformed_datagrams",
            "Datagrams that are not a valid read request (short, unknown opcode, bad syntax, "
            "non-ASCII, unknown mode); dropped, or answered with an error for an unknown mode.",
            registry=r,
        )
        self.write_refused = Counter(
            "pureboot_tftp_write_requests_refused",
            "Write requests answered with an access violation (the server is read-only).",
            registry=r,
        )
        self.duplicates = Counter(
            "pureboot_tftp_duplicate_requests",
            "Repeated read requests from the same client port that did not start a transfer.",
            registry=r,
        )
        self.paths_refused = Counter(
            "pureboot_tftp_paths_refused",
            "Read requests refused before any lookup: '..', NUL or control characters, "
            "over 255 characters.",
            registry=r,
        )
        for kind in KINDS:  # every series exists from the start, at zero
            for metric in (self.started, self.completed, self.failed, self.bytes_sent):
                metric.labels(kind)
            self.retransmits.labels(kind)
            self.duration.labels(kind)

    def record(self, report: TransferReport) -> None:
        """Count one finished transfer (in the parent)."""
        kind = report.kind if report.kind in KINDS else "missing"
        (self.failed if report.failed else self.completed).labels(kind).inc()
        self.bytes_sent.labels(kind).inc(report.bytes_sent)
        if report.retransmits:
            self.retransmits.labels(kind).inc(report.retransmits)
        self.duration.labels(kind).observe(report.seconds)

    def serve(self, address: str, port: int) -> WSGIServer:
        """Serve ``/metrics`` over HTTP from a daemon thread; raises OSError if it cannot bind."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return server
