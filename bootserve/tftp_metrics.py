"""TFTP statistics: the daemon's Prometheus registry and its per-transfer reports.

Every transfer runs in the daemon's one event loop (see ``bootserve.tftp``),
so the counters live in that process's registry and a finished transfer is
counted and logged where it ends: one ``TransferReport``, a few increments and
one log line per transfer, nothing per datagram beyond a dropped one's count.
The HTTP endpoint runs in a daemon thread of the same process
(``prometheus_client.start_http_server``).
"""

from __future__ import annotations

from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# What a transfer served: a file under the boot root, a config rendered by the
# decision engine, or nothing (the request got "file not found").
KINDS = ("static", "rendered", "missing")
# The boot decision counter: the web process has one too (bootserve.metrics),
# under the same name, help and labels, so a query sums both.
DECISIONS_NAME = "pureboot_boot_decisions"
DECISIONS_HELP = "Boot decisions answered, by protocol and by what the machine was told."
DECISIONS_LABELS = ("protocol", "outcome")
# bootserve.engine.Kind's values (the daemon's loop does not import the engine).
OUTCOMES = ("wait", "install", "local", "agent", "ignore")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(frozen=True)
class TransferReport:
    """What one finished transfer did, for its log line and the counters."""

    peer: str
    port: int
    path: str
    kind: str
    bytes_sent: int  # data payload put on the wire, retransmissions included
    seconds: float
    retransmits: int
    blksize: int
    windowsize: int
    error_code: int | None = None  # None: the transfer completed
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.error_code is not None


class TftpMetrics:
    """The daemon's Prometheus metrics, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.started = Counter(
            "pureboot_tftp_transfers_started",
            "Transfers started, by what they serve.",
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
            "Blocks (and OACKs) sent again: after a timeout, or from a gap or duplicate ACK "
            "the client reported in a window.",
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
            "non-ASCII, unknown mode) or, on a transfer's port, shorter than an ACK; dropped, "
            "or answered with an error for an unknown mode.",
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
        self.active = Gauge(
            "pureboot_tftp_transfers_active",
            "Transfers running now.",
            registry=r,
        )
        self.refused_per_client = Counter(
            "pureboot_tftp_requests_refused_per_client",
            "Read requests refused because their address already ran its bound of "
            "concurrent transfers (PUREBOOT_TFTP_MAX_PER_CLIENT).",
            registry=r,
        )
        self.refused_busy = Counter(
            "pureboot_tftp_requests_refused_busy",
            "Read requests dropped because the bound on concurrent transfers was reached "
            "(the client resends its request).",
            registry=r,
        )
        self.decisions = Counter(
            DECISIONS_NAME,
            DECISIONS_HELP + " Here: PXELINUX and GRUB per-machine configs, Pi boot requests.",
            DECISIONS_LABELS,
            registry=r,
        )
        for protocol in ("pxelinux", "grub", "pi"):
            for outcome in OUTCOMES:
                self.decisions.labels(protocol, outcome)
        for kind in KINDS:  # every series exists from the start, at zero
            for metric in (self.started, self.completed, self.failed, self.bytes_sent):
                metric.labels(kind)
            self.retransmits.labels(kind)
            self.duration.labels(kind)

    def record(self, report: TransferReport) -> None:
        """Count one finished transfer."""
        kind = report.kind if report.kind in KINDS else "missing"
        (self.failed if report.failed else self.completed).labels(kind).inc()
        self.bytes_sent.labels(kind).inc(report.bytes_sent)
        if report.retransmits:
            self.retransmits.labels(kind).inc(report.retransmits)
        self.duration.labels(kind).observe(report.seconds)

    def count_decision(self, protocol: str, outcome: str) -> None:
        """Count one boot decision the database helper rendered a config from."""
        self.decisions.labels(protocol, outcome).inc()

    def serve(self, address: str, port: int) -> WSGIServer:
        """Serve ``/metrics`` over HTTP from a daemon thread; raises OSError if it cannot bind."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return server
