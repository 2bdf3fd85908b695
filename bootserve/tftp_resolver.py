"""Where the TFTP daemon's answers come from: the boot root, or the database through a helper.

The daemon's event loop (``bootserve.tftpd``) never imports Django: Django
and the project's apps cost about 60 MB in a process, more than the whole
loop with 500 transfers running. A path that may name a config decided from
the database (``pxelinux.cfg/<name>``, ``grub/<name>``, ``<Pi serial>/...``)
goes to a helper process (``bootserve.tftp_db``) that runs the boot service;
any other path is a file under the boot root, checked in the loop with no
query at all. The helper starts on the first request that needs it (about a
second and a half: Django's start-up, which TFTP clients ride out with their
usual retries), answers over a Unix socket pair while the loop goes on serving
transfers, and exits after ``idle`` seconds without a request. If it exits or
dies with requests outstanding, they go to a new helper (twice at most; then
they are answered "file not found").

The daemon reports each finished or refused transfer worth a boot record
(``record``): the helper writes it (``tftp_files.record``), with no answer
back. A report is best-effort: if the helper's socket is full or the helper
is gone, it is dropped and counted, never retried and never waited for.

``InlineResolver`` calls a resolver function in the loop itself, for tests
and for a process that has Django already.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import pi_names

log = logging.getLogger("pureboot.tftp")

Result = bytes | Path | None
Decided = tuple[str, str]  # a boot decision's (protocol, outcome)
Done = Callable[[Result], None]
Recorder = Callable[[dict], None]
DATABASE_DIRS = ("pxelinux.cfg", "grub", "grub-arm64")
MAX_MESSAGE = 1024 * 1024
MAX_ATTEMPTS = 3  # helpers one request may be sent to
RECORDS_PER_SECOND = 50  # transfer reports the daemon sends its helper, sustained
RECORD_BURST = 200  # and at once


def wants_database(path: str) -> bool:
    """Whether ``tftp_files.resolve`` may answer ``path`` with anything but a boot-root file.

    A superset of the names PXELINUX, GRUB and the Pi module parse: a false
    "yes" costs a round trip to the helper (which then serves the file).
    """
    if pi_names.is_pi_root_name(path):
        return True  # which Pi asks decides (its leased address); bootcode.bin does not
    first, slash, rest = path.lstrip("/").partition("/")
    if not slash:
        return False
    if first in DATABASE_DIRS:
        return "/" not in rest
    return pi_names.is_pi_folder(first)


#: Names a loader fetches by the dozen (GRUB modules and lists, PXELINUX
#: modules, device trees and overlays, fonts): parts of one boot, not worth a
#: boot record each.
LOADER_PIECES = (".mod", ".lst", ".c32", ".dtb", ".dtbo", ".pf2")


def worth_recording(path: str) -> bool:
    """Whether a transfer of ``path`` gets a boot record (every name but a loader's pieces)."""
    return not path.lower().endswith(LOADER_PIECES)


def transfer_record(report) -> dict | None:
    """The boot record of a finished transfer (a ``TransferReport``), or None for none.

    None for a loader's pieces; for a rendered config, whose boot decision was
    recorded when the helper decided it; and for a config name that was not
    found, which is a loader trying its names (PXELINUX asks for eight or so
    before ``default``), not a machine being refused.
    """
    if not worth_recording(report.path) or report.kind == "rendered":
        return None
    fields = {"peer": report.peer, "path": report.path}
    if report.kind == "missing":
        if wants_database(report.path):
            return None
        return {**fields, "outcome": "not_found", "answer": "TFTP: file not found"}
    if report.failed:
        answer = f"TFTP: failed after {report.bytes_sent} bytes: {report.error}"
        return {**fields, "outcome": "failed", "answer": answer}
    answer = f"TFTP: {report.bytes_sent} bytes sent in {report.seconds:.2f} s"
    return {**fields, "outcome": "file_sent", "answer": answer}


def refusal_record(address: str, path: str, why: str) -> dict:
    """The boot record of a read request refused before any transfer."""
    # A refused path can be as long as a datagram: the record keeps its start only.
    return {"peer": address, "path": path[:512], "outcome": "refused", "answer": f"TFTP: {why}"}


def static_file(root: Path, relative: str) -> Path | None:
    """A regular file under ``root`` (symlinks leading outside are refused)."""
    root = root.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


def encode_answer(request_id: int, result: Result, decided: Decided | None = None) -> bytes:
    """The helper's answer to one request: a JSON header line, then a rendered config's bytes.

    ``decided`` is the boot decision the config was rendered from, (protocol,
    outcome): the daemon counts it in its own metrics.
    """
    head: dict = {"id": request_id}
    if decided is not None:
        head["decision"] = list(decided)
    if isinstance(result, Path):
        return json.dumps({**head, "path": str(result)}).encode() + b"\n"
    if result is None:
        return json.dumps(head).encode() + b"\n"
    return json.dumps({**head, "bytes": len(result)}).encode() + b"\n" + bytes(result)


def decode_answer(message: bytes) -> tuple[int, Result, Decided | None]:
    """Raises ValueError (or KeyError, TypeError) on anything else."""
    head, _, body = message.partition(b"\n")
    fields = json.loads(head)
    decided = fields.get("decision")
    if decided is not None:
        protocol, outcome = (str(v) for v in decided)
        decided = (protocol, outcome)
    if "path" in fields:
        return int(fields["id"]), Path(fields["path"]), decided
    if "bytes" in fields:
        if len(body) != int(fields["bytes"]):
            raise ValueError("truncated answer")
        return int(fields["id"]), body, decided
    return int(fields["id"]), None, decided


class InlineResolver:
    """A resolver function ``(path, peer) -> bytes | Path | None`` called in the loop."""

    def __init__(
        self, function: Callable[[str, tuple], Result], recorder: Recorder | None = None
    ) -> None:
        self._function = function
        self._recorder = recorder

    def attach(self, watch: Callable, unwatch: Callable) -> None:
        pass

    def pending(self) -> int:
        return 0

    def resolve(self, path: str, peer: tuple, done: Done) -> None:
        # In a process with Django (the tests), start and end like a request does.
        db = sys.modules.get("django.db")
        if db is not None:
            db.close_old_connections()
        try:
            result = self._function(path, peer)
        except Exception:
            log.exception("tftp: resolving %s for %s failed", path, peer[0])
            result = None
        finally:
            if db is not None:
                db.close_old_connections()
        done(result)

    def record(self, fields: dict) -> None:
        """Hand a transfer report to the recorder function, if there is one."""
        if self._recorder is None:
            return
        try:
            self._recorder(fields)
        except Exception:
            log.exception("tftp: recording the transfer of %s failed", fields.get("path"))

    def close(self) -> None:
        pass


class HelperResolver:
    """Boot-root files in the loop; database decisions in a helper process started on demand."""

    def __init__(
        self,
        boot_root: Path,
        *,
        idle: float = 600.0,
        argv: list[str] | None = None,
        on_decision: Callable[[str, str], None] | None = None,
    ):
        self.boot_root = Path(boot_root)
        # Told each boot decision the helper made (the daemon's decision counter).
        self._on_decision = on_decision
        self.idle = idle
        self._argv = argv or [sys.executable, "-m", "bootserve.tftp_db"]
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, tuple, Done, int]] = {}
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self._watch: Callable = lambda fd, callback: None
        self._unwatch: Callable = lambda fd: None
        self.started = 0  # helpers started, for the log and the tests
        self.records_dropped = 0  # transfer reports not sent (over budget, or the helper behind)
        # A token bucket for transfer reports: they share the helper's socket
        # with the config requests a booting machine waits on, so a flood of
        # refused requests (spoofed sources, one report each) must never fill it.
        self._record_tokens = float(RECORD_BURST)
        self._record_at = time.monotonic()

    def attach(self, watch: Callable, unwatch: Callable) -> None:
        """The loop's hooks to wait on the helper's socket."""
        self._watch, self._unwatch = watch, unwatch

    def pending(self) -> int:
        return len(self._pending)

    def resolve(self, path: str, peer: tuple, done: Done) -> None:
        if not wants_database(path):
            done(static_file(self.boot_root, path))
            return
        request_id = next(self._ids)
        self._pending[request_id] = (path, peer, done, 0)
        self._submit(request_id)

    def _submit(self, request_id: int) -> None:
        path, peer, done, attempts = self._pending[request_id]
        if attempts >= MAX_ATTEMPTS:
            del self._pending[request_id]
            log.error("tftp: no database helper answered for %s; answering not found", path)
            done(None)
            return
        self._pending[request_id] = (path, peer, done, attempts + 1)
        try:
            sock = self._helper()
            request = {"id": request_id, "path": path, "peer": [str(peer[0]), int(peer[1])]}
            sock.send(json.dumps(request).encode())
        except OSError as exc:
            log.error("tftp: database helper unavailable: %s", exc)
            self._helper_gone()

    def record(self, fields: dict) -> None:
        """Send a transfer report to the helper (started if needed); no answer, no retry.

        At most RECORDS_PER_SECOND (bursts of RECORD_BURST) reach the helper;
        the rest are dropped and counted, never queued.
        """
        now = time.monotonic()
        self._record_tokens = min(
            float(RECORD_BURST), self._record_tokens + (now - self._record_at) * RECORDS_PER_SECOND
        )
        self._record_at = now
        if self._record_tokens < 1:
            self._dropped("over the daemon's report budget")
            return
        self._record_tokens -= 1
        try:
            self._helper().send(json.dumps({"record": fields}).encode())
        except OSError as exc:  # BlockingIOError: the helper is behind; drop, never wait
            self._dropped(str(exc))

    def _dropped(self, why: str) -> None:
        self.records_dropped += 1
        if self.records_dropped == 1 or self.records_dropped % 1000 == 0:
            log.warning(
                "tftp: %d transfer report(s) not recorded so far (%s)",
                self.records_dropped,
                why,
            )

    def _helper(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            argv = [*self._argv, str(theirs.fileno()), str(self.idle)]
            self._proc = subprocess.Popen(
                argv, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self.started += 1
        self._watch(ours.fileno(), self._on_readable)
        log.info("tftp: database helper started (pid %d)", self._proc.pid)
        return ours

    def _on_readable(self) -> None:
        while self._sock is not None:
            try:
                message = self._sock.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:  # the helper exited (idle, or died)
                self._helper_gone()
                return
            try:
                request_id, result, decided = decode_answer(message)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("tftp: unreadable answer from the database helper: %s", exc)
                continue
            if decided is not None and self._on_decision is not None:
                self._on_decision(*decided)
            entry = self._pending.pop(request_id, None)
            if entry is not None:
                entry[2](result)

    def _helper_gone(self) -> None:
        if self._sock is not None:
            self._unwatch(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                code = self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                code = self._proc.wait()
            level = logging.INFO if code == 0 else logging.ERROR
            log.log(level, "tftp: database helper (pid %d) exited with %s", self._proc.pid, code)
            self._proc = None
        for request_id in list(self._pending):
            if request_id in self._pending:
                self._submit(request_id)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()  # the helper sees the end of its socket and exits
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
