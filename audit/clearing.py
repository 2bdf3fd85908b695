"""Clearing the audit trail up to a point, only through an approved request.

The events go to an export file first (JSON Lines: a header, then every
event with its ``prev_hash`` and ``hash``, so the file proves itself with
:func:`verify_export`); only then are they deleted, and an
``audit.checkpoint`` event records the last cleared seq and hash, the file's
name and its SHA-256. ``audit_verify`` continues the chain from that
checkpoint. All of it is one transaction holding the chain's append lock:
a failure leaves the trail as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from pureboot import gate

from .db import unlocked
from .hashing import GENESIS_HASH, HASHED_FIELDS, canonical_json, compute_hash, format_timestamp
from .models import AuditEvent
from .services import CHECKPOINT_ACTION, _lock_chain, record, verify_chain

EXPORT_FORMAT = "pureboot-audit-export/1"


def bounds() -> tuple[int, int] | None:
    """The first and last seq still in the trail, or None when it is empty."""
    span = AuditEvent.objects.aggregate(first=Min("seq"), last=Max("seq"))
    return None if span["first"] is None else (span["first"], span["last"])


def check_point(through_seq) -> int:
    """Validate the point up to which a clearing would go."""
    return _checked(through_seq)[1]


def _checked(through_seq) -> tuple[int, int]:
    """``(first seq in the trail, through_seq)`` once ``through_seq`` is valid."""
    if isinstance(through_seq, bool) or not isinstance(through_seq, int):
        raise ValidationError({"through_seq": "A whole number: the last event to clear."})
    span = bounds()
    if span is None or through_seq < span[0]:
        raise ValidationError({"through_seq": "Nothing to clear up to that point."})
    if through_seq >= span[1]:
        raise ValidationError(
            {"through_seq": f"Must be below the latest event ({span[1]}): the trail keeps its tip."}
        )
    return span[0], through_seq


def _event_line(event: AuditEvent) -> str:
    entry = {name: getattr(event, name) for name in HASHED_FIELDS}
    entry["timestamp"] = format_timestamp(entry["timestamp"])
    entry["object_id"] = str(entry["object_id"])
    entry["prev_hash"], entry["hash"] = event.prev_hash, event.hash
    return canonical_json(entry) + "\n"


def _export(path: Path, first: int, through_seq: int, request_id: int) -> str:
    """Write events first..through_seq to ``path`` (mode 600); return its SHA-256."""
    digest = hashlib.sha256()
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            header = {
                "format": EXPORT_FORMAT,
                "from_seq": first,
                "through_seq": through_seq,
                "exported_at": format_timestamp(timezone.now()),
                "approval_request": request_id,
            }

            def write(line: str) -> None:
                out.write(line)
                digest.update(line.encode("utf-8"))

            write(canonical_json(header) + "\n")
            events = AuditEvent.objects.filter(seq__lte=through_seq).order_by("seq")
            for event in events.iterator(chunk_size=2000):
                write(_event_line(event))
            out.flush()
            os.fsync(out.fileno())
        os.rename(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def binding() -> str:
    """What an approved clearing is bound to: where the trail starts now."""
    span = bounds()
    return str(span[0] if span else 0)


def clear_through(
    through_seq: int, actor: str, *, approval: gate.Approval, reason: str = ""
) -> str:
    """Export and delete events up to ``through_seq``; leave a checkpoint event.

    Only with ``approval`` sealed for clearing the trail as it starts now.
    """
    request_id = approval.request_id
    directory = Path(settings.PUREBOOT_AUDIT_EXPORT_DIR)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = None
    try:
        with transaction.atomic():
            _lock_chain()
            gate.verify(approval, action="audit.clear", target="audit:trail", bound_to=binding())
            first, through_seq = _checked(through_seq)
            report = verify_chain()
            if not report.intact:
                raise ValidationError(f"The audit chain is broken ({report}); nothing was cleared.")
            last_hash = AuditEvent.objects.get(seq=through_seq).hash
            path = directory / f"audit-{first:012d}-{through_seq:012d}-request{request_id}.jsonl"
            sha256 = _export(path, first, through_seq, request_id)
            with unlocked():
                deleted, _ = AuditEvent.objects.filter(seq__lte=through_seq).delete()
            record(
                actor=actor,
                action=CHECKPOINT_ACTION,
                object_type="audit.auditevent",
                object_id=through_seq,
                message=reason,
                details={
                    "cleared_from_seq": first,
                    "cleared_through_seq": through_seq,
                    "cleared_through_hash": last_hash,
                    "count": deleted,
                    "export_file": path.name,
                    "export_sha256": sha256,
                    "approval_request": request_id,
                },
            )
    except BaseException:
        if path is not None and path.exists():
            path.unlink()  # the events are still in the trail; no stray copy
        raise
    return f"cleared events {first}-{through_seq} ({deleted}) to {path.name}, sha256 {sha256}"


@dataclass(frozen=True)
class ExportReport:
    count: int
    from_seq: int
    through_seq: int
    problem: str = ""

    @property
    def intact(self) -> bool:
        return not self.problem


def verify_export(path: Path) -> ExportReport:
    """Recompute every hash and link in an export file."""
    count, prev_hash, expected, header = 0, None, None, {}
    try:
        with open(path, encoding="utf-8") as lines:
            header = json.loads(lines.readline() or "{}")
            if header.get("format") != EXPORT_FORMAT:
                return ExportReport(0, 0, 0, "not a PureBoot audit export")
            expected = header["from_seq"]
            if expected == 1:
                prev_hash = GENESIS_HASH
            for number, line in enumerate(lines, start=2):
                entry = json.loads(line)
                if entry["seq"] != expected:
                    return ExportReport(
                        count, header["from_seq"], expected - 1, f"gap at line {number}"
                    )
                if prev_hash is not None and entry["prev_hash"] != prev_hash:
                    return ExportReport(
                        count, header["from_seq"], expected - 1, f"broken link at seq {expected}"
                    )
                if compute_hash(entry, entry["prev_hash"]) != entry["hash"]:
                    return ExportReport(
                        count, header["from_seq"], expected - 1, f"hash mismatch at seq {expected}"
                    )
                prev_hash, expected, count = entry["hash"], expected + 1, count + 1
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return ExportReport(
            count, header.get("from_seq", 0), (expected or 1) - 1, f"unreadable: {exc}"
        )
    if expected - 1 != header["through_seq"]:
        return ExportReport(count, header["from_seq"], expected - 1, "ends before its through_seq")
    return ExportReport(count, header["from_seq"], header["through_seq"])
