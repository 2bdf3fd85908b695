"""Forwarding the audit trail to a SIEM as RFC 5424 syslog over TCP or TLS.

Each event becomes one RFC 5424 message: facility 13 (log audit), severity
5 (notice), the event's own timestamp, APP-NAME ``pureboot``, MSGID its
action, structured data ``[pureboot@32473 ...]`` with its seq, hashes,
actor, object, source and request id, and as MSG the event as canonical
JSON (every hashed field plus ``prev_hash`` and ``hash``), so the collector
can recompute the chain. Messages are framed by octet counting (RFC 6587),
over TCP (``tcp://host:port``) or TLS (``tls://host:port``, RFC 5425) with
the collector's certificate verified against ``PUREBOOT_SYSLOG_CA_FILE``
(or the system's CAs) and its host name.

A :class:`~audit.models.ForwardCursor` remembers the last seq forwarded,
and holds a lease so one forwarder runs at a time; each batch's cursor move
renews the lease, only while the run still holds it, and a run that lost it
(it outlived the lease and another took over) stops there. The cursor
moves only once the collector has read the whole batch: after sending, the
forwarder closes its side and waits for the collector to close too, which a
collector does only after reading everything before the close. A batch
that fails is sent again from its first event, so nothing is lost; a
collector that fails between reading a batch and closing may get it twice
(every message carries its seq and hash to spot that).
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .hashing import HASHED_FIELDS, canonical_json, format_timestamp
from .models import AuditEvent, ForwardCursor

log = logging.getLogger(__name__)

CURSOR_NAME = "syslog"
BATCH = 500
# RFC 5424 section 6.2.1: facility 13 is "log audit"; severity 5 is "notice".
FACILITY_LOG_AUDIT = 13
SEVERITY_NOTICE = 5
APP_NAME = "pureboot"
# An SD-ID needs an IANA private enterprise number; 32473 is the one RFC 5612
# reserves for documentation and examples, as PureBoot has none of its own.
SD_ID = "pureboot@32473"
SD_FIELDS = ("seq", "hash", "prev_hash", "actor", "action", "object_type", "object_id",
             "source_ip", "request_id")  # fmt: skip
BOM = "\ufeff"


class ForwardError(Exception):
    """The collector could not be reached or did not take a batch; nothing moved."""


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Destination:
        """``tcp://host:port`` or ``tls://host:port`` (settings.py checked the shape)."""
        scheme, _, rest = url.partition("://")
        host, _, port = rest.rpartition(":")
        if scheme not in ("tcp", "tls") or not host or not port.isdigit():
            raise ForwardError("PUREBOOT_SYSLOG_URL must be tcp://host:port or tls://host:port")
        return cls(scheme, host.strip("[]"), int(port))


def _printable(value: str, limit: int) -> str:
    """RFC 5424 header fields: printable US-ASCII without spaces, or "-"."""
    cleaned = "".join(ch for ch in value if 33 <= ord(ch) <= 126)[:limit]
    return cleaned or "-"


def _param(value: object) -> str:
    # RFC 5424 section 6.3.3: '"', '\' and ']' are escaped in PARAM-VALUE.
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def message(event: AuditEvent, hostname: str) -> bytes:
    """One event as an RFC 5424 message (without framing)."""
    entry = {name: getattr(event, name) for name in HASHED_FIELDS}
    entry["timestamp"] = format_timestamp(event.timestamp)
    entry["prev_hash"] = event.prev_hash
    entry["hash"] = event.hash
    pri = FACILITY_LOG_AUDIT * 8 + SEVERITY_NOTICE
    sd = " ".join(f'{name}="{_param(entry[name])}"' for name in SD_FIELDS)
    header = (
        f"<{pri}>1 {entry['timestamp']} {_printable(hostname, 255)} {APP_NAME} - "
        f"{_printable(event.action, 32)} [{SD_ID} {sd}]"
    )
    return f"{header} {BOM}{canonical_json(entry)}".encode()


def frame(payload: bytes) -> bytes:
    """RFC 6587 octet counting: the length in bytes, a space, the message."""
    return str(len(payload)).encode("ascii") + b" " + payload


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.PUREBOOT_SYSLOG_CA_FILE or None)
    if settings.PUREBOOT_SYSLOG_CERT_FILE:
        context.load_cert_chain(
            settings.PUREBOOT_SYSLOG_CERT_FILE, settings.PUREBOOT_SYSLOG_KEY_FILE
        )
    return context


def send(destination: Destination, messages: Iterable[bytes]) -> None:
    """Send framed messages on one connection and wait until the collector has read them.

    Raises :class:`ForwardError` when the connection, the TLS handshake or
    the closing exchange fails or times out.
    """
    timeout = settings.PUREBOOT_SYSLOG_TIMEOUT
    where = f"{destination.scheme}://{destination.host}:{destination.port}"
    try:
        raw = socket.create_connection((destination.host, destination.port), timeout=timeout)
    except OSError as exc:
        raise ForwardError(f"cannot connect to {where}: {exc}") from None
    conn: socket.socket = raw
    try:
        if destination.scheme == "tls":
            conn = _tls_context().wrap_socket(raw, server_hostname=destination.host)
        conn.sendall(b"".join(frame(payload) for payload in messages))
        if isinstance(conn, ssl.SSLSocket):
            try:
                # close_notify after the data: the collector answers once it has read it.
                conn = conn.unwrap()
            except ssl.SSLEOFError:
                pass  # it closed the connection instead of answering: it has read it too
        conn.shutdown(socket.SHUT_WR)
        # A syslog collector sends nothing back; wait for its close, at most the timeout.
        deadline = time.monotonic() + timeout
        closed = False
        while not closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ForwardError(f"{where}: the collector did not close within {timeout} s")
            conn.settimeout(left)
            try:
                closed = not conn.recv(4096)
            except TimeoutError:
                raise ForwardError(
                    f"{where}: the collector did not close within {timeout} s"
                ) from None
    except ssl.SSLCertVerificationError as exc:
        raise ForwardError(f"{where}: the collector's certificate: {exc.verify_message}") from None
    except (OSError, ssl.SSLError) as exc:
        raise ForwardError(f"{where}: {exc}") from None
    finally:
        conn.close()
        raw.close()


def _lease() -> timedelta:
    """How long one batch may take: connect, handshake, send, close; and a margin."""
    return timedelta(seconds=4 * settings.PUREBOOT_SYSLOG_TIMEOUT + 60)


def _claim() -> tuple[int, str] | None:
    """Take the cursor's lease; returns (last_seq, token) or None while another holds it."""
    now = timezone.now()
    with transaction.atomic():
        cursor, _ = ForwardCursor.objects.select_for_update().get_or_create(name=CURSOR_NAME)
        if cursor.lease_until is not None and cursor.lease_until > now:
            return None
        token = uuid.uuid4().hex
        cursor.lease_until, cursor.lease_token = now + _lease(), token
        cursor.save(update_fields=["lease_until", "lease_token", "updated_at"])
        return cursor.last_seq, token


def _release(token: str, *, last_seq: int | None = None, error: str = "") -> None:
    fields: dict = {"lease_until": None, "lease_token": "", "last_error": error[:2000]}
    if last_seq is not None:
        fields.update(last_seq=last_seq, last_sent_at=timezone.now())
    ForwardCursor.objects.filter(name=CURSOR_NAME, lease_token=token).update(**fields)


@dataclass(frozen=True)
class ForwardReport:
    sent: int
    through_seq: int
    busy: bool = False
    lost: bool = False

    def __str__(self) -> str:
        if self.busy:
            return "another forwarder is sending; nothing done"
        if self.lost:
            return (
                f"forwarded {self.sent} audit events, then found the lease taken by another "
                f"forwarder: stopped, cursor left at seq {self.through_seq}"
            )
        return f"forwarded {self.sent} audit events (through seq {self.through_seq})"


def forward(*, batch: int = BATCH, max_batches: int = 20) -> ForwardReport:
    """Forward the events past the cursor, in seq order, ``batch`` per connection.

    Stops after ``max_batches`` (the next run goes on), or after a batch
    when another forwarder has taken the lease (the cursor is then not moved
    for that batch: the new holder sends it, maybe again). Raises
    :class:`ForwardError` (after recording it on the cursor) when a batch
    fails; the batches before it stay forwarded.
    """
    if not settings.PUREBOOT_SYSLOG_URL:
        raise ForwardError("PUREBOOT_SYSLOG_URL is not set: syslog forwarding is off")
    destination = Destination.parse(settings.PUREBOOT_SYSLOG_URL)
    claimed = _claim()
    if claimed is None:
        return ForwardReport(0, 0, busy=True)
    last_seq, token = claimed
    hostname = socket.gethostname()
    sent = 0
    try:
        for _ in range(max_batches):
            events = list(AuditEvent.objects.filter(seq__gt=last_seq).order_by("seq")[:batch])
            if not events:
                break
            send(destination, (message(e, hostname) for e in events))
            sent += len(events)
            # Recorded per batch (a later failing batch does not undo this one),
            # renewing the lease, only while this run still holds it.
            now = timezone.now()
            held = ForwardCursor.objects.filter(name=CURSOR_NAME, lease_token=token).update(
                last_seq=events[-1].seq, last_sent_at=now, lease_until=now + _lease()
            )
            if held != 1:
                log.warning(
                    "audit forwarding lost its lease after sending through seq %s; stopping "
                    "(another forwarder sends from seq %s)",
                    events[-1].seq,
                    last_seq,
                )
                return ForwardReport(sent, last_seq, lost=True)
            last_seq = events[-1].seq
            if len(events) < batch:
                break
    except ForwardError as exc:
        log.warning("audit forwarding stopped after seq %s: %s", last_seq, exc)
        _release(token, error=str(exc))
        raise
    except BaseException:
        _release(token, error="interrupted")
        raise
    _release(token, last_seq=last_seq)
    return ForwardReport(sent, last_seq)
