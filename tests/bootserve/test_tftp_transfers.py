"""The TFTP daemon's transfers: windowsize, retransmission, the bound, slow and vanished clients.

Real servers on loopback, against atftp's client (the common client that
negotiates RFC 7440 windowsize; Debian package ``atftp``) and the test client
in ``tftpclient``, which loses blocks and withholds or repeats ACKs on purpose.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time

import pytest

from bootserve.tftp import BootServer, static_file
from bootserve.tftp_content import ContentCache

from . import tftpclient

SMALL = os.urandom(300_000)
BIG = os.urandom(1_500_000)  # over the fixture cache's per-file limit: read per transfer


@pytest.fixture
def serve(tmp_path):
    """Start a daemon: ``serve(**BootServer options)`` -> (server, port)."""
    root = tmp_path / "boot"
    root.mkdir()
    (root / "small.bin").write_bytes(SMALL)
    (root / "big.bin").write_bytes(BIG)
    (root / "tiny.cfg").write_bytes(b"DEFAULT local\n")
    running = []

    def start(**options):
        options.setdefault("cache", ContentCache(max_file=512 * 1024))
        options.setdefault("retries", 3)
        options.setdefault("timeout", 1)
        srv = BootServer("127.0.0.1", 0, lambda path, peer: static_file(root, path), **options)
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        running.append((srv, thread))
        return srv, srv._listener.getsockname()[1]

    start.root = root
    yield start
    for srv, thread in running:
        srv._should_stop = True
        thread.join(5)


def sample(srv, name, **labels):
    return srv.metrics.registry.get_sample_value(name, labels)


def wait_for(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def finished(srv) -> float:
    return sum(
        sample(srv, f"pureboot_tftp_transfers_{what}_total", kind="static")
        for what in ("completed", "failed")
    )


def transfer_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("tftp: transfer ")]


@pytest.mark.parametrize(("name", "content"), [("small.bin", SMALL), ("big.bin", BIG)])
def test_windowsize_with_atftps_client(serve, tmp_path, caplog, name, content):
    caplog.set_level(logging.INFO, logger="pureboot.tftp")
    atftp = shutil.which("atftp")
    if atftp is None:
        pytest.fail("atftp not found: install the Debian package atftp (make tools does)")
    srv, port = serve()
    out = tmp_path / "out"
    argv = [atftp, "--option", "windowsize 16", "--option", "blksize 1468", "--option",
            "tsize 0", "-g", "-r", name, "-l", str(out), "127.0.0.1", str(port)]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == content
    wait_for(lambda: finished(srv) == 1)
    (line,) = transfer_lines(caplog)
    assert f"path={name} kind=static bytes={len(content)} " in line
    assert "blksize=1468 windowsize=16 outcome=ok" in line


def test_a_lost_block_restarts_the_window_at_the_gap(serve):
    srv, port = serve()
    options = {"windowsize": "8"}
    data, acked = tftpclient.read("127.0.0.1", port, "small.bin", options, lose=frozenset({20}))
    assert data == SMALL and acked == {"windowsize": "8"}
    wait_for(lambda: finished(srv) == 1)
    # Blocks 17-24 went out; the client had 17-19 and said so: 20-24 again, then 25-27.
    assert sample(srv, "pureboot_tftp_retransmits_total", kind="static") == 5
    assert sample(srv, "pureboot_tftp_transfers_completed_total", kind="static") == 1


def test_a_duplicate_ack_resends_the_window_once(serve):
    srv, port = serve()
    options = {"windowsize": "4"}
    dup = frozenset({8})
    data, _ = tftpclient.read("127.0.0.1", port, "small.bin", options, duplicate_acks=dup)
    assert data == SMALL
    wait_for(lambda: finished(srv) == 1)
    # 9-12 once more for the repeated ACK of 8; the client's ACK of the copies it
    # already had does not make the daemon send 13-16 twice (nor any window after).
    assert sample(srv, "pureboot_tftp_retransmits_total", kind="static") == 4


@pytest.mark.parametrize(("window", "resent"), [(1, 1), (4, 4)])
def test_a_withheld_ack_is_recovered_by_the_timeout(serve, window, resent):
    srv, port = serve(timeout=1)
    options = {"windowsize": str(window)}
    began = time.monotonic()
    data, _ = tftpclient.read("127.0.0.1", port, "small.bin", options, skip_acks=frozenset({8}))
    assert data == SMALL
    assert time.monotonic() - began >= 0.9  # the daemon waited out its 1 s timeout once
    wait_for(lambda: finished(srv) == 1)
    assert sample(srv, "pureboot_tftp_retransmits_total", kind="static") == resent


@pytest.mark.parametrize("window", [1, 3, 16])
@pytest.mark.parametrize("name", ["small.bin", "big.bin"])
def test_random_losses_never_corrupt_a_file(serve, window, name):
    srv, port = serve(timeout=1, retries=10)
    content = SMALL if name == "small.bin" else BIG
    blocks = len(content) // 1024 + 1
    rng = random.Random(f"{window}-{name}")
    lose = frozenset(rng.sample(range(1, blocks), 3 if window == 1 else 6))
    dups = frozenset(rng.sample(range(1, blocks), 6))
    options = {"windowsize": str(window), "blksize": "1024", "tsize": "0"}
    data, acked = tftpclient.read(
        "127.0.0.1", port, name, options, timeout=10, lose=lose, duplicate_acks=dups
    )
    assert data == content and acked["tsize"] == str(len(content))
    wait_for(lambda: finished(srv) == 1)
    assert sample(srv, "pureboot_tftp_transfers_completed_total", kind="static") == 1
    assert sample(srv, "pureboot_tftp_retransmits_total", kind="static") >= len(lose)


def test_block_numbers_wrap_past_65535(serve):
    srv, port = serve()
    # blksize 8: 37,501 blocks for small.bin, 187,501 for big.bin (wrapping twice).
    for name, content in (("small.bin", SMALL), ("big.bin", BIG)):
        options = {"blksize": "8", "windowsize": "64"}
        data, _ = tftpclient.read("127.0.0.1", port, name, options)
        assert data == content


def hold_a_transfer(port: int, path: str, source: str = "") -> tuple[socket.socket, bytes]:
    """Start a transfer, take its first block and never acknowledge it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.sendto(tftpclient._request(1, path, {}), ("127.0.0.1", port))
    packet, _ = sock.recvfrom(70000)
    assert packet[:4] == struct.pack("!HH", 3, 1)
    return sock, packet


def test_the_bound_on_concurrent_transfers(serve, caplog):
    caplog.set_level(logging.INFO, logger="pureboot.tftp")
    srv, port = serve(max_transfers=1, timeout=5)
    holder, first = hold_a_transfer(port, "tiny.cfg")
    waiting = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    waiting.settimeout(0.5)
    request = tftpclient._request(1, "small.bin", {})
    waiting.sendto(request, ("127.0.0.1", port))
    with pytest.raises(TimeoutError):
        waiting.recvfrom(70000)  # dropped, not refused: the client will ask again
    assert sample(srv, "pureboot_tftp_requests_refused_busy_total") == 1
    assert sample(srv, "pureboot_tftp_transfers_active") == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("1 transfers running, the bound (--max-transfers" in w for w in warnings)
    holder.sendto(struct.pack("!HH", 4, 1), ("127.0.0.1", holder_port(srv)))
    wait_for(lambda: sample(srv, "pureboot_tftp_transfers_active") == 0)
    waiting.sendto(request, ("127.0.0.1", port))  # the client's resend, same port
    packet, _ = waiting.recvfrom(70000)
    assert packet[:4] == struct.pack("!HH", 3, 1)
    assert sample(srv, "pureboot_tftp_duplicate_requests_total") == 0
    holder.close()
    waiting.close()


def test_one_address_cannot_take_every_transfer_slot(serve, caplog):
    """Red team: one host opened all 1,000 slots and every other client timed out."""
    caplog.set_level(logging.INFO, logger="pureboot.tftp")
    srv, port = serve(max_transfers=50, max_per_client=4, timeout=5)
    held = [hold_a_transfer(port, "small.bin", source="127.0.0.2")[0] for _ in range(4)]
    flooder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flooder.bind(("127.0.0.2", 0))
    flooder.settimeout(2)
    flooder.sendto(tftpclient._request(1, "small.bin", {}), ("127.0.0.1", port))
    packet, _ = flooder.recvfrom(70000)
    assert packet[:4] == struct.pack("!HH", 5, 2)  # ERROR, access violation: not silence
    assert b"Too many transfers from your address" in packet
    assert sample(srv, "pureboot_tftp_requests_refused_per_client_total") == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("127.0.0.2 has 4 transfers running" in w for w in warnings)
    # Everyone else is served at once, while the flooder holds its four.
    began = time.monotonic()
    assert tftpclient.read("127.0.0.1", port, "small.bin")[0] == SMALL
    assert time.monotonic() - began < 2
    wait_for(lambda: sample(srv, "pureboot_tftp_transfers_active") == 4)
    # Its slots come back as its transfers end.
    for sock in held:
        sock.close()
    wait_for(lambda: sample(srv, "pureboot_tftp_transfers_active") == 0, seconds=8)
    assert srv._per_client == {}
    flooder.close()


def holder_port(srv) -> int:
    (transfer,) = srv._by_fd.values()
    return transfer.sock.getsockname()[1]


def test_a_silent_or_vanished_client_never_blocks_the_others(serve, caplog):
    caplog.set_level(logging.INFO, logger="pureboot.tftp")
    srv, port = serve(timeout=5, retries=5)
    silent, _ = hold_a_transfer(port, "small.bin")
    began = time.monotonic()
    for name, content in (("small.bin", SMALL), ("big.bin", BIG)):
        assert tftpclient.read("127.0.0.1", port, name, {"windowsize": "8"})[0] == content
    assert time.monotonic() - began < 2.5  # not waiting on the silent one's 5 s timeout
    wait_for(lambda: sample(srv, "pureboot_tftp_transfers_completed_total", kind="static") == 2)
    assert sample(srv, "pureboot_tftp_transfers_active") == 1
    # The client goes away: the daemon's next resend meets a closed port and the
    # transfer ends then, not after 5 retries x 5 s.
    silent.close()
    wait_for(lambda: sample(srv, "pureboot_tftp_transfers_active") == 0, seconds=8)
    assert sample(srv, "pureboot_tftp_transfers_failed_total", kind="static") == 1
    failed = [line for line in transfer_lines(caplog) if "outcome=failed" in line]
    assert len(failed) == 1 and "client unreachable" in failed[0]


def test_a_junk_datagram_on_a_transfer_port_is_dropped_and_counted(serve):
    srv, port = serve(timeout=5)
    holder, _ = hold_a_transfer(port, "small.bin")
    transfer_port = holder_port(srv)
    holder.sendto(b"\x00", ("127.0.0.1", transfer_port))
    wait_for(lambda: sample(srv, "pureboot_tftp_malformed_datagrams_total") == 1)
    holder.sendto(struct.pack("!HH", 4, 1), ("127.0.0.1", transfer_port))
    packet, _ = holder.recvfrom(70000)
    assert packet[:4] == struct.pack("!HH", 3, 2)  # the transfer goes on
    holder.close()


def test_static_files_are_read_once_per_version(serve):
    srv, port = serve()
    for _ in range(3):
        assert tftpclient.read("127.0.0.1", port, "small.bin")[0] == SMALL
    assert (srv.cache.reads, srv.cache.hits) == (1, 2)
    changed = os.urandom(1000)
    target = serve.root / "small.bin"
    target.write_bytes(changed)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert tftpclient.read("127.0.0.1", port, "small.bin")[0] == changed
    assert srv.cache.reads == 2
    # Over the per-file limit: read per transfer, never kept.
    assert tftpclient.read("127.0.0.1", port, "big.bin")[0] == BIG
    assert srv.cache.reads == 2 and len(srv.cache) == 1


def test_the_listening_socket_is_sized_for_a_storm(serve, caplog):
    caplog.set_level(logging.INFO, logger="pureboot.tftp")
    srv, _ = serve(rcvbuf=4 * 1024 * 1024)
    actual = srv._listener.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    assert srv.rcvbuf == actual
    if os.geteuid() == 0:  # SO_RCVBUFFORCE: past net.core.rmem_max
        assert actual >= 4 * 1024 * 1024
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"receive buffer {actual} bytes" in m for m in messages)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_the_command_serves_without_django_and_starts_the_database_helper_on_demand(tmp_path):
    """``manage.py bootserve`` end to end: its own SQLite database, boot root and logs."""
    from django.conf import settings

    root = tmp_path / "boot"
    root.mkdir()
    (root / "undionly.kpxe").write_bytes(SMALL)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        PUREBOOT_VAR_DIR=str(tmp_path / "var"),
        PUREBOOT_BOOT_ROOT=str(root),
        PUREBOOT_TFTP_HELPER_IDLE_SECONDS="2",
        DJANGO_SETTINGS_MODULE="pureboot.settings",
    )
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, timeout=120)
    port = free_udp_port()
    log_file = (tmp_path / "tftp.log").open("wb")
    daemon = subprocess.Popen(
        [*manage, "bootserve", "--address", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for(lambda: b"TFTP on" in (tmp_path / "tftp.log").read_bytes(), seconds=60)
        assert b"bootserve.tftpd" in open(f"/proc/{daemon.pid}/cmdline", "rb").read()
        assert tftpclient.read("127.0.0.1", port, "undionly.kpxe")[0] == SMALL
        assert rss_kib(daemon.pid) < 45 * 1024  # Django alone is about 60 MB
        # The file was served from the loop; its boot record is written by the
        # helper, which starts for it, and goes idle again.
        wait_for(lambda: "bootserve.tftp_db" in helpers(daemon.pid), seconds=10)
        wait_for(lambda: helpers(daemon.pid).strip() == "", seconds=15)
        for _ in range(2):  # the helper starts, answers, goes idle and exits, and again
            config = tftpclient.read("127.0.0.1", port, "pxelinux.cfg/01-52-54-00-00-00-77")[0]
            assert b"LOCALBOOT 0" in config
            assert "bootserve.tftp_db" in helpers(daemon.pid)
            wait_for(lambda: helpers(daemon.pid).strip() == "", seconds=10)  # reaped too
        text = (tmp_path / "tftp.log").read_text()
        assert text.count("database helper started") == 3
        assert "path=pxelinux.cfg/01-52-54-00-00-00-77 kind=rendered" in text
        assert daemon.poll() is None
        with sqlite3.connect(tmp_path / "var" / "pureboot.sqlite3") as db:
            rows = db.execute(
                "SELECT protocol, client_address, asked, outcome FROM bootserve_bootrecord "
                "ORDER BY id"
            ).fetchall()
        assert rows[0] == ("tftp", "127.0.0.1", "undionly.kpxe", "file_sent")
        configs = [row for row in rows[1:] if row[2] == "pxelinux.cfg/01-52-54-00-00-00-77"]
        assert configs and {row[0] for row in configs} == {"tftp"}
    finally:
        daemon.terminate()
        daemon.wait(10)
        log_file.close()


def helpers(pid: int) -> str:
    """Command lines of the daemon's child processes."""
    out = subprocess.run(["ps", "-o", "args=", "--ppid", str(pid)], capture_output=True, text=True)
    return out.stdout


def test_a_database_helper_that_keeps_dying_means_not_found_and_files_still_flow(tmp_path):
    from bootserve.tftp_resolver import HelperResolver

    root = tmp_path / "boot"
    root.mkdir()
    (root / "undionly.kpxe").write_bytes(SMALL)
    dying = [sys.executable, "-c", "import sys; sys.exit(3)"]
    resolver = HelperResolver(root, argv=dying)
    srv = BootServer("127.0.0.1", 0, resolver, retries=3, timeout=1)
    port = srv._listener.getsockname()[1]
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        with pytest.raises(tftpclient.TftpError) as exc:
            tftpclient.read("127.0.0.1", port, "pxelinux.cfg/default")
        assert exc.value.code == 1
        assert resolver.started == 3 and resolver.pending() == 0
        assert tftpclient.read("127.0.0.1", port, "undionly.kpxe")[0] == SMALL
    finally:
        srv._should_stop = True
        thread.join(5)
