"""A small, strict TFTP client (RFC 1350 + 2347/2348/2349) for the daemon's tests."""

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
) -> tuple[bytes, dict[str, str]]:
    """Fetch ``path``; returns (content, acknowledged options).

    ``repeat_request``: send the read request that many extra times, as a client
    whose first request seemed lost would. ``lose``: block numbers whose first
    copy is ignored (not acknowledged), so the server has to send them again.
    """
    options = options or {}
    blksize = 512
    acked: dict[str, str] = {}
    to_lose = set(lose)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        for _ in range(1 + repeat_request):
            sock.sendto(_request(1, path, options), (host, port))
        data = b""
        expected = 1
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
                sock.sendto(struct.pack("!HH", 4, 0), server)
                continue
            if opcode != 3:
                raise AssertionError(f"unexpected opcode {opcode}")
            (block,) = struct.unpack("!H", packet[2:4])
            if block in to_lose:
                to_lose.discard(block)
                continue
            if block == expected:
                data += packet[4:]
                expected = (expected + 1) % 65536
            sock.sendto(struct.pack("!HH", 4, block), server)
            if len(packet) - 4 < blksize:
                return data, acked


def send_raw(host: str, port: int, datagram: bytes, timeout: float = 2.0) -> bytes | None:
    """Send one datagram; the reply, or None when the server stays silent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(datagram, (host, port))
        try:
            return sock.recvfrom(70000)[0]
        except TimeoutError:
            return None
