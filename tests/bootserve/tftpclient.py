"""A small, strict TFTP client (RFC 1350 + 2347/2348/2349/7440) for the daemon's tests.

It can misbehave on purpose: lose data blocks, withhold or repeat ACKs, so
the tests see the daemon's retransmissions.
"""

from __future__ import annotations

import socket
import struct


class TftpError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"TFTP error {code}: {message}")
        self.code = code


def _request(opcode: int, path: str, options: dict[str, str]) -> bytes:
    body = path.encode("latin-1") + b"\x00octet\x00"
    for key, value in options.items():
        body += key.encode() + b"\x00" + value.encode() + b"\x00"
    return struct.pack("!H", opcode) + body


def read(
    host: str,
    port: int,
    path: str,
    options: dict[str, str] | None = None,
    timeout: float = 5.0,
    *,
    repeat_request: int = 0,
    lose: frozenset[int] = frozenset(),
    skip_acks: frozenset[int] = frozenset(),
    duplicate_acks: frozenset[int] = frozenset(),
) -> tuple[bytes, dict[str, str]]:
    """Fetch ``path``; returns (content, acknowledged options).

    ``repeat_request``: send the read request that many extra times, as a client
    whose first request seemed lost would. ``lose``: block numbers (counted from
    1, not wrapping) whose first copy is ignored, as if lost on the wire.
    ``skip_acks``: blocks whose first ACK is not sent. ``duplicate_acks``:
    blocks whose ACK is sent twice. With a windowsize acknowledged, the client
    ACKs each full window and the last block, and answers a block out of order
    once with the ACK of the last block it has in order (RFC 7440 section 4).
    """
    options = options or {}
    blksize, window = 512, 1
    acked: dict[str, str] = {}
    to_lose, to_skip = set(lose), set(skip_acks)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)

        def ack(block: int, server) -> None:
            if block in to_skip:
                to_skip.discard(block)
                return
            packet = struct.pack("!HH", 4, block & 0xFFFF)
            for _ in range(2 if block in duplicate_acks else 1):
                sock.sendto(packet, server)

        for _ in range(1 + repeat_request):
            sock.sendto(_request(1, path, options), (host, port))
        data = bytearray()
        expected = 1  # the next block wanted, counted from 1 without wrapping
        in_window, reacked = 0, False
        while True:
            packet, server = sock.recvfrom(70000)
            (opcode,) = struct.unpack("!H", packet[:2])
            if opcode == 5:
                (code,) = struct.unpack("!H", packet[2:4])
                raise TftpError(code, packet[4:].rstrip(b"\x00").decode("latin-1"))
            if opcode == 6:  # OACK
                words = packet[2:].split(b"\x00")[:-1]
                acked = {words[i].decode(): words[i + 1].decode() for i in range(0, len(words), 2)}
                blksize = int(acked.get("blksize", 512))
                window = int(acked.get("windowsize", 1))
                ack(0, server)
                continue
            if opcode != 3:
                raise AssertionError(f"unexpected opcode {opcode}")
            (block,) = struct.unpack("!H", packet[2:4])
            if block == expected & 0xFFFF and expected in to_lose:
                to_lose.discard(expected)
                continue
            if block != expected & 0xFFFF:  # a copy already had, or one after a gap
                if window == 1:
                    sock.sendto(struct.pack("!HH", 4, block), server)
                elif not reacked:
                    reacked, in_window = True, 0
                    ack(expected - 1, server)
                continue
            data += packet[4:]
            last = len(packet) - 4 < blksize
            in_window += 1
            reacked = False
            if in_window >= window or last:
                in_window = 0
                ack(expected, server)
            expected += 1
            if last:
                return bytes(data), acked


def send_raw(host: str, port: int, datagram: bytes, timeout: float = 2.0) -> bytes | None:
    """Send one datagram; the reply, or None when the server stays silent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(datagram, (host, port))
        try:
            return sock.recvfrom(70000)[0]
        except TimeoutError:
            return None
