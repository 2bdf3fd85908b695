"""One TFTP read transfer as a state machine driven by the daemon's event loop.

Options: blksize (RFC 2348), timeout and tsize (RFC 2349), windowsize
(RFC 7440). With options the transfer first sends an OACK and waits for
ACK 0; then it sends a window of blocks and waits for the ACK of the last.

Retransmission:
- on a timeout (no progress for ``timeout`` seconds) the OACK or the whole
  window from the block after the last acknowledged one is sent again, up to
  ``retries`` times, after which the transfer fails;
- an ACK of a block inside the window (the client saw a gap, RFC 7440
  section 4) starts the next window right after that block;
- with windowsize above 1, a duplicate ACK of the last acknowledged block
  resends the window once per acknowledged block (a client that answers every
  out-of-order block with the same ACK does not make the daemon send the
  window again for each of them);
- in lock-step (windowsize 1) a duplicate ACK is ignored: answering it is the
  "Sorcerer's Apprentice" bug of RFC 1350, fixed by RFC 1123 4.2.3.1.

Each transfer has its own UDP socket, connected to the client: the kernel
drops datagrams from any other address (another "transfer ID"), and a client
that has gone away (its port closed) shows up as "connection refused" on the
next receive, which ends the transfer at once instead of after all retries.
"""

from __future__ import annotations

import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable

from .tftp_content import Content, FileReader, block_count
from .tftp_metrics import TransferReport

OPCODE_DATA, OPCODE_ACK, OPCODE_ERROR, OPCODE_OACK = 3, 4, 5, 6
ERR_UNDEFINED, ERR_ILLEGAL = 0, 4
DEFAULT_BLKSIZE = 512
HEADER = struct.Struct("!HH")
RECEIVE_SIZE = 1024  # ACKs are 4 bytes, client errors a little more
OACK, SENDING, FINISHED = "oack", "sending", "finished"
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # linux/udp.h
GSO_MAX_SEGMENTS = 64  # the kernel's UDP_MAX_SEGMENTS
GSO_MAX_BYTES = 65000  # one UDP datagram's payload at most, headers aside


def error_packet(code: int, message: str) -> bytes:
    return HEADER.pack(OPCODE_ERROR, code) + message.encode("ascii", "replace") + b"\x00"


class Transfer:
    """Serves one read request over its own connected, non-blocking socket.

    The owner (the daemon) registers ``sock`` with its poller, calls
    ``on_readable`` when it is readable and ``on_timer`` once ``deadline``
    has passed, and is called back with ``done(transfer)`` exactly once.
    """

    __slots__ = (
        "sock",
        "peer",
        "path",
        "kind",
        "deadline",
        "state",
        "_reader",
        "_packets",
        "_size",
        "_blocks",
        "_last_payload",
        "blksize",
        "window",
        "timeout",
        "_retries",
        "_retries_left",
        "_acked",
        "_sent",
        "_dup_answered",
        "_stale_ack",
        "_oack",
        "_done",
        "_dropped",
        "_gso",
        "_started",
        "bytes_sent",
        "retransmits",
        "error_code",
        "error",
    )

    def __init__(
        self,
        sock: socket.socket,
        peer: tuple,
        path: str,
        kind: str,
        reader: Content | FileReader,
        options: OrderedDict,
        *,
        timeout: float,
        retries: int,
        started: float | None = None,
        done: Callable[[Transfer], None],
        dropped: Callable[[tuple, str], None],
    ) -> None:
        self.sock = sock
        self.peer = peer
        self.path = path
        self.kind = kind
        self._reader = reader
        self._size = reader.size()
        self.blksize = DEFAULT_BLKSIZE
        self.window = 1
        self.timeout = float(timeout)
        self._retries = retries
        self._retries_left = retries
        self._done = done
        self._dropped = dropped
        self._started = time.monotonic() if started is None else started
        self.bytes_sent = self.retransmits = 0
        self.error_code: int | None = None
        self.error = ""
        self._acked = self._sent = 0
        self._dup_answered = self._stale_ack = -1
        self._gso = hasattr(sock, "sendmsg")
        self._oack = self._negotiate(options)
        self.deadline = time.monotonic() + self.timeout
        self._blocks = block_count(self._size, self.blksize)
        self._last_payload = self._size - (self._blocks - 1) * self.blksize
        self._packets = reader.packets(self.blksize)
        self.state = OACK if self._oack else SENDING

    def _negotiate(self, options: OrderedDict) -> bytes:
        """The OACK for the options we take (in the client's order), or b"" for none."""
        acked: list[tuple[str, str]] = []
        for key, value in options.items():
            if key == "blksize":
                self.blksize = int(value)
            elif key == "timeout":
                self.timeout = float(value)
            elif key == "windowsize":
                self.window = int(value)
            elif key == "tsize":
                value = str(self._size)
            else:
                continue
            acked.append((key, value))
        if not acked:
            return b""
        body = b"".join(k.encode() + b"\x00" + v.encode() + b"\x00" for k, v in acked)
        return struct.pack("!H", OPCODE_OACK) + body

    # --- driven by the owner ------------------------------------------------

    def start(self) -> None:
        if self._oack:
            self._send(self._oack)
        else:
            self._send_window(1)

    def on_readable(self) -> None:
        refused: OSError | None = None
        while True:
            try:
                data = self.sock.recv(RECEIVE_SIZE)
                break
            except BlockingIOError:
                if refused is not None:
                    self._finish(ERR_UNDEFINED, f"client unreachable: {refused.strerror}")
                return
            except OSError as exc:  # ECONNREFUSED: the client's port is closed
                if refused is not None:
                    self._finish(ERR_UNDEFINED, f"client unreachable: {exc.strerror or exc}")
                    return
                # Linux reports the error before datagrams already queued: the
                # client's last ACK may be waiting behind it.
                refused = exc
        if len(data) < 4:
            self._dropped(self.peer, "short datagram on a transfer")
            return
        opcode, number = HEADER.unpack_from(data)
        if opcode == OPCODE_ACK:
            self._on_ack(number)
        elif opcode == OPCODE_ERROR:
            message = data[4:].split(b"\x00", 1)[0].decode("ascii", "replace")
            self._finish(number, f"client: {message[:100]}")
        else:
            self._send(error_packet(ERR_ILLEGAL, "Expected an ACK"))
            self._finish(ERR_ILLEGAL, f"client sent opcode {opcode} during a read")

    def on_timer(self, now: float) -> None:
        """The deadline passed without progress: resend, or give up."""
        if self._retries_left <= 0:
            self._send(error_packet(ERR_UNDEFINED, "Timeout"))
            self._finish(ERR_UNDEFINED, f"timeout after {self._retries} retransmits")
            return
        self._retries_left -= 1
        self.deadline = now + self.timeout
        if self.state == OACK:
            self.retransmits += 1
            self._send(self._oack)
        else:
            self._resend_window()

    def close(self, reason: str) -> None:
        """End the transfer now (the daemon stops): the client gets an error."""
        if self.state != FINISHED:
            self._send(error_packet(ERR_UNDEFINED, reason))
            self._finish(ERR_UNDEFINED, reason)

    def report(self) -> TransferReport:
        return TransferReport(
            peer=str(self.peer[0]),
            port=int(self.peer[1]),
            path=self.path,
            kind=self.kind,
            bytes_sent=self.bytes_sent,
            seconds=round(time.monotonic() - self._started, 6),
            retransmits=self.retransmits,
            blksize=self.blksize,
            windowsize=self.window,
            error_code=self.error_code,
            error=self.error,
        )

    # --- the protocol -------------------------------------------------------

    def _on_ack(self, number: int) -> None:
        if self.state == OACK:
            if number == 0:
                self.state = SENDING
                self._progress()
                self._send_window(1)
            return
        acked = self._acked
        ack = acked + ((number - acked) & 0xFFFF)  # the absolute block; wire numbers wrap
        if ack > self._sent:
            return  # a block we never sent (or an old ACK from before a wrap): ignore
        if ack == acked:
            if self.window == 1:
                return  # lock-step: never answer a duplicate ACK (Sorcerer's Apprentice)
            if ack == self._stale_ack:
                self._stale_ack = -1  # the client saw copies of blocks it had: nothing lost
            elif self._dup_answered != ack:
                self._dup_answered = ack
                self._resend_window()
            return
        self._acked = ack
        if ack > self._stale_ack:
            self._stale_ack = -1
        self._progress()
        if ack >= self._blocks:
            self._finish(None, "")
            return
        if ack < self._sent:
            self._dup_answered = ack  # a gap in the window: this ACK is the loss signal
        self._send_window(ack + 1)

    def _resend_window(self) -> None:
        """The window after the last acknowledged block again (a duplicate ACK, a timeout).

        A client that already had some of these blocks answers their copies
        with one more ACK of its last block; that ACK is expected, not taken as
        a new loss (else each window would be sent twice from then on).
        """
        self._send_window(self._acked + 1)
        self._stale_ack = self._sent

    def _progress(self) -> None:
        self._retries_left = self._retries
        self.deadline = time.monotonic() + self.timeout

    def _send_window(self, first: int) -> None:
        last = first + self.window - 1
        if last > self._blocks:
            last = self._blocks
        packets = self._packets
        try:
            if last > first and self._gso:
                if packets is None:
                    packet, blksize = self._reader.packet, self.blksize
                    self._send_segmented([packet(n, blksize) for n in range(first, last + 1)])
                else:
                    self._send_segmented(packets[first - 1 : last])
            elif packets is not None:
                send = self.sock.send
                for number in range(first, last + 1):
                    send(packets[number - 1])
            else:
                send, packet, blksize = self.sock.send, self._reader.packet, self.blksize
                for number in range(first, last + 1):
                    send(packet(number, blksize))
        except BlockingIOError:
            pass  # the send buffer is full: as if lost; resent after the timeout
        except OSError as exc:
            self._finish(ERR_UNDEFINED, f"send failed: {exc.strerror or exc}")
            return
        count = last - first + 1
        sent_bytes = count * self.blksize
        if last == self._blocks:
            sent_bytes -= self.blksize - self._last_payload
        self.bytes_sent += sent_bytes
        if first <= self._sent:
            self.retransmits += min(last, self._sent) - first + 1
        if last > self._sent:
            self._sent = last

    def _send_segmented(self, window: list[bytes]) -> None:
        """A window's packets in as few sendmsg calls as UDP GSO allows (Linux 4.18+).

        The kernel cuts the buffer into datagrams of blksize + 4 bytes (the last
        may be shorter), so a window costs one system call instead of one per
        block. Where segmentation is refused (a path MTU below the packet size,
        no checksum offload, an old kernel) the transfer falls back to one send
        per block for good.
        """
        per_call = max(1, min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // (self.blksize + 4)))
        ancillary = [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", self.blksize + 4))]
        for start in range(0, len(window), per_call):
            try:
                self.sock.sendmsg(window[start : start + per_call], ancillary)
            except (BlockingIOError, ConnectionRefusedError):
                raise
            except OSError:
                self._gso = False
                for packet in window[start:]:
                    self.sock.send(packet)
                return

    def _send(self, packet: bytes) -> None:
        try:
            self.sock.send(packet)
        except OSError:
            pass  # lost like any datagram; a timeout or the client's error ends it

    def _finish(self, code: int | None, message: str) -> None:
        if self.state == FINISHED:
            return
        self.state = FINISHED
        self.error_code, self.error = code, message
        self._reader.close()
        self._done(self)
