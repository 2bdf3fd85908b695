"""The TFTP daemon against a real UDP client: files, options, and hostile datagrams."""

from __future__ import annotations

import os
import struct
import threading

import pytest

from bootserve.tftp import BootServer, clean_options, normalise_path, static_file

from . import tftpclient

CONTENT = os.urandom(300_000)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "boot"
    (root / "ipxe").mkdir(parents=True)
    (root / "ipxe" / "undionly.kpxe").write_bytes(CONTENT)
    (tmp_path / "outside.txt").write_text("secret")
    (root / "escape").symlink_to(tmp_path / "outside.txt")

    def resolver(path, peer):
        if path == "pxelinux.cfg/default":
            return b"DEFAULT local\nLABEL local\n  LOCALBOOT 0\n"
        return static_file(root, path)

    srv = BootServer("127.0.0.1", 0, resolver, retries=3, timeout=2)
    port = srv._listener.getsockname()[1]
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield srv, port
    srv._should_stop = True
    tftpclient.send_raw("127.0.0.1", port, b"\x00", timeout=0.2)  # wake the loop
    thread.join(5)


def test_static_file_with_and_without_options(server):
    srv, port = server
    data, acked = tftpclient.read("127.0.0.1", port, "ipxe/undionly.kpxe")
    assert data == CONTENT and acked == {}
    data, acked = tftpclient.read(
        "127.0.0.1", port, "/ipxe/undionly.kpxe", {"blksize": "1468", "tsize": "0"}
    )
    assert data == CONTENT
    assert acked == {"blksize": "1468", "tsize": str(len(CONTENT))}


def test_rendered_config(server):
    srv, port = server
    data, _ = tftpclient.read("127.0.0.1", port, "pxelinux.cfg/default")
    assert b"LOCALBOOT 0" in data


def test_blksize_is_clamped(server):
    srv, port = server
    data, acked = tftpclient.read("127.0.0.1", port, "ipxe/undionly.kpxe", {"blksize": "99999"})
    assert acked["blksize"] == "65464" and data == CONTENT


@pytest.mark.parametrize(
    "path", ["../outside.txt", "ipxe/../../outside.txt", "escape", "missing.bin"]
)
def test_paths_outside_or_missing_get_an_error(server, path):
    srv, port = server
    with pytest.raises(tftpclient.TftpError) as exc:
        tftpclient.read("127.0.0.1", port, path)
    assert exc.value.code in (1, 2)


def test_write_requests_are_refused(server):
    srv, port = server
    reply = tftpclient.send_raw("127.0.0.1", port, tftpclient._request(2, "x.bin", {}))
    assert reply[:4] == struct.pack("!HH", 5, 2)
    assert b"read-only" in reply


@pytest.mark.parametrize(
    "datagram",
    [
        b"\x00",
        b"\x00\x01",
        b"\x00\x01abc",
        b"\x00\x09junk\x00octet\x00",
        b"\x00\x01\xff\xfe\x00octet\x00",
    ],
)
def test_malformed_datagrams_are_dropped_and_the_server_lives(server, datagram):
    srv, port = server
    assert tftpclient.send_raw("127.0.0.1", port, datagram, timeout=0.3) is None
    assert srv.counters["dropped"] >= 1
    data, _ = tftpclient.read("127.0.0.1", port, "ipxe/undionly.kpxe")
    assert data == CONTENT


def test_a_repeated_request_does_not_start_a_second_transfer(server):
    import socket

    srv, port = server
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        request = tftpclient._request(1, "ipxe/undionly.kpxe", {})
        sock.sendto(request, ("127.0.0.1", port))
        sock.sendto(request, ("127.0.0.1", port))
        first, sender = sock.recvfrom(70000)
        assert first[:4] == struct.pack("!HH", 3, 1)
    assert srv.counters["duplicates"] == 1


def test_option_and_path_cleaning():
    from collections import OrderedDict

    opts = clean_options(
        OrderedDict(mode="octet", blksize="2", timeout="999", tsize="x", windowsize="4")
    )
    assert opts == OrderedDict(mode="octet", blksize="8")
    assert normalise_path("\\boot\\bcd") == "boot/bcd"
    for bad in ("", "a/../b", "x\x00", "a" * 300, "/", "a\x01b"):
        assert normalise_path(bad) is None


@pytest.mark.django_db
def test_pxelinux_and_grub_configs_come_from_the_decision_engine(settings, tmp_path):
    from bootserve.tftp_files import resolve
    from nodes import services as node_services
    from nodes.models import Node
    from tests.factories import make_node, make_workflow

    settings.PUREBOOT_BOOT_ROOT = tmp_path
    settings.PUREBOOT_PUBLIC_URL = "http://10.99.0.1:8000"
    installed = make_node("installed", macs=["52:54:00:00:00:0a"])
    cfg = resolve("pxelinux.cfg/01-52-54-00-00-00-0a", ("10.99.0.50", 2000)).decode()
    assert "LOCALBOOT 0" in cfg
    grub_cfg = resolve("grub/grub.cfg-01-52-54-00-00-00-0a", ("10.99.0.50", 2000)).decode()
    assert "exit" in grub_cfg
    assert Node.objects.get(pk=installed.pk).state == "installed"
    pending = make_node(macs=["52:54:00:00:00:0b"])
    workflow = make_workflow(
        "pxe",
        "name: pxe\ntasks:\n  - type: pxe_boot\n    kernel: /k/vmlinuz\n    initrd: /k/initrd\n",
    )
    node_services.perform(pending.pk, "assign", node_services.SYSTEM, workflow=workflow)
    cfg = resolve("pxelinux.cfg/01-52-54-00-00-00-0b", ("10.99.0.51", 2000)).decode()
    assert "KERNEL http://10.99.0.1:8000/boot/files/k/vmlinuz" in cfg
    assert Node.objects.get(pk=pending.pk).state == "installing"
    assert b"LOCALBOOT" in resolve("pxelinux.cfg/default", ("10.99.0.52", 1))
    unknown = resolve("pxelinux.cfg/01-52-54-00-00-00-0c", ("10.99.0.53", 1)).decode()
    assert "LOCALBOOT 0" in unknown  # a discovered machine waits briefly, then its disk
    assert Node.objects.filter(interfaces__mac="52:54:00:00:00:0c", state="discovered").exists()
