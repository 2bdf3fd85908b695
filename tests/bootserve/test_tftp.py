"""The TFTP daemon against a real UDP client: files, options, and hostile datagrams."""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bootserve.tftp import BootServer, clean_options, normalise_path, static_file
from bootserve.tftp_metrics import KINDS

from . import tftpclient

CONTENT = os.urandom(300_000)
DEFAULT_CFG = b"DEFAULT local\nLABEL local\n  LOCALBOOT 0\n"


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "boot"
    (root / "ipxe").mkdir(parents=True)
    (root / "ipxe" / "undionly.kpxe").write_bytes(CONTENT)
    (tmp_path / "outside.txt").write_text("secret")
    (root / "escape").symlink_to(tmp_path / "outside.txt")

    def resolver(path, peer):
        if path == "pxelinux.cfg/default":
            return DEFAULT_CFG
        return static_file(root, path)

    srv = BootServer("127.0.0.1", 0, resolver, retries=3, timeout=2)
    port = srv._listener.getsockname()[1]
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield srv, port
    srv._should_stop = True
    tftpclient.send_raw("127.0.0.1", port, b"\x00", timeout=0.2)  # wake the loop
    thread.join(5)


def sample(srv, name, **labels):
    return srv.metrics.registry.get_sample_value(name, labels)


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
    assert sample(srv, "pureboot_tftp_malformed_datagrams_total") == 1
    data, _ = tftpclient.read("127.0.0.1", port, "ipxe/undionly.kpxe")
    assert data == CONTENT


def test_a_repeated_request_does_not_start_a_second_transfer(server):
    srv, port = server
    data, _ = tftpclient.read("127.0.0.1", port, "ipxe/undionly.kpxe", repeat_request=1)
    assert data == CONTENT
    assert sample(srv, "pureboot_tftp_duplicate_requests_total") == 1
    assert sample(srv, "pureboot_tftp_transfers_started_total", kind="static") == 1


def test_option_and_path_cleaning():
    from collections import OrderedDict

    opts = clean_options(
        OrderedDict(mode="octet", blksize="2", timeout="999", tsize="x", windowsize="4", foo="1")
    )
    assert opts == OrderedDict(mode="octet", blksize="8", windowsize="4")
    opts = clean_options(OrderedDict(blksize="99999", windowsize="500", timeout="3", tsize="0"))
    assert opts == OrderedDict(blksize="65464", windowsize="64", timeout="3", tsize="0")
    assert clean_options(OrderedDict(windowsize="0", tsize="-1")) == OrderedDict()
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


@pytest.mark.django_db
def test_an_unknown_uuid_name_is_not_found_so_pxelinux_goes_on_to_its_mac(settings, tmp_path):
    from bootserve.tftp_files import resolve
    from nodes.models import Node
    from tests.factories import make_node

    settings.PUREBOOT_BOOT_ROOT = tmp_path
    uuid = "4c4c4544-0042-3510-8052-b7c04f4e3732"
    for name in (f"pxelinux.cfg/{uuid}", f"grub/grub.cfg-{uuid}"):
        assert resolve(name, ("10.99.0.60", 1)) is None
    assert not Node.objects.exists()
    make_node("installed", macs=["52:54:00:00:00:0d"], system_uuid=uuid)
    assert b"LOCALBOOT 0" in resolve(f"pxelinux.cfg/{uuid}", ("10.99.0.60", 1))


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(values, name, **labels) -> float:
    return values[(name, frozenset(labels.items()))]


def test_transfers_and_refusals_are_counted_on_the_metrics_endpoint_and_logged(server, caplog):
    caplog.set_level(logging.INFO, logger="pureboot.tftp")
    srv, port = server
    host, metrics_port = srv.serve_metrics("127.0.0.1", 0)
    url = f"http://{host}:{metrics_port}/metrics"
    before = scrape(url)
    assert all(
        value(before, f"pureboot_tftp_transfers_{what}_total", kind=kind) == 0
        for what in ("started", "completed", "failed")
        for kind in KINDS
    )

    data, acked = tftpclient.read("127.0.0.1", port, "ipxe/undionly.kpxe", {"blksize": "1468"})
    assert data == CONTENT and acked == {"blksize": "1468"}
    assert tftpclient.read("127.0.0.1", port, "ipxe/undionly.kpxe", repeat_request=1)[0] == CONTENT
    assert tftpclient.read("127.0.0.1", port, "pxelinux.cfg/default")[0] == DEFAULT_CFG
    # The client ignores block 1 once; the server sends it again after its 2 s timeout.
    data, _ = tftpclient.read("127.0.0.1", port, "pxelinux.cfg/default", lose=frozenset({1}))
    assert data == DEFAULT_CFG
    with pytest.raises(tftpclient.TftpError):
        tftpclient.read("127.0.0.1", port, "missing.bin")
    with pytest.raises(tftpclient.TftpError):
        tftpclient.read("127.0.0.1", port, "../outside.txt")
    assert tftpclient.send_raw("127.0.0.1", port, tftpclient._request(2, "x.bin", {}))
    assert tftpclient.send_raw("127.0.0.1", port, b"\x00\x01abc", timeout=0.3) is None

    # A child reports after the client's last ACK: wait for all five reports.
    deadline = time.monotonic() + 15
    while True:
        values = scrape(url)
        finished = sum(
            value(values, f"pureboot_tftp_transfers_{what}_total", kind=kind)
            for what in ("completed", "failed")
            for kind in KINDS
        )
        if finished >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    expected = {
        "pureboot_tftp_transfers_started_total": {"static": 2, "rendered": 2, "missing": 1},
        "pureboot_tftp_transfers_completed_total": {"static": 2, "rendered": 2, "missing": 0},
        "pureboot_tftp_transfers_failed_total": {"static": 0, "rendered": 0, "missing": 1},
        "pureboot_tftp_sent_bytes_total": {
            "static": 2 * len(CONTENT),
            "rendered": 3 * len(DEFAULT_CFG),  # the retransmitted block is sent twice
            "missing": 0,
        },
        "pureboot_tftp_retransmits_total": {"static": 0, "rendered": 1, "missing": 0},
        "pureboot_tftp_transfer_duration_seconds_count": {"static": 2, "rendered": 2, "missing": 1},
    }
    actual = {name: {kind: value(values, name, kind=kind) for kind in KINDS} for name in expected}
    assert actual == expected
    assert value(values, "pureboot_tftp_transfer_duration_seconds_sum", kind="rendered") >= 2
    for name, count in {
        "pureboot_tftp_malformed_datagrams_total": 1,
        "pureboot_tftp_write_requests_refused_total": 1,
        "pureboot_tftp_duplicate_requests_total": 1,
        "pureboot_tftp_paths_refused_total": 1,
    }.items():
        assert value(values, name) == count, name

    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tftp: transfer ")]
    assert len(lines) == 5
    peer = r"peer=127\.0\.0\.1:\d+"
    seconds = r"seconds=\d+\.\d{3}"
    patterns = [
        rf"{peer} path=ipxe/undionly\.kpxe kind=static bytes=300000 {seconds} retransmits=0 "
        r"blksize=1468 windowsize=1 outcome=ok$",
        rf"{peer} path=ipxe/undionly\.kpxe kind=static bytes=300000 {seconds} retransmits=0 "
        r"blksize=512 windowsize=1 outcome=ok$",
        rf"{peer} path=pxelinux\.cfg/default kind=rendered bytes={len(DEFAULT_CFG)} {seconds} "
        r"retransmits=0 blksize=512 windowsize=1 outcome=ok$",
        rf"{peer} path=pxelinux\.cfg/default kind=rendered bytes={2 * len(DEFAULT_CFG)} "
        rf"{seconds} retransmits=1 blksize=512 windowsize=1 outcome=ok$",
        rf"{peer} path=missing\.bin kind=missing bytes=0 {seconds} retransmits=0 blksize=512 "
        r"windowsize=1 outcome=failed error=1 message='missing\.bin: not found'$",
    ]
    for pattern in patterns:
        assert any(re.search(pattern, line) for line in lines), (pattern, lines)


def test_every_name_a_config_parser_knows_goes_to_the_database_helper():
    from bootserve import grub, pxelinux, raspberrypi
    from bootserve.tftp_resolver import wants_database

    names = [
        "pxelinux.cfg/default", "pxelinux.cfg/01-52-54-00-00-00-0a", "pxelinux.cfg/C0A80001",
        "pxelinux.cfg/4c4c4544-0042-3510-8052-b7c04f4e3732", "grub/grub.cfg",
        "grub/grub.cfg-01-52-54-00-00-00-0a", "grub/grub.cfg-52:54:00:00:00:0a",
        "cafe0001/start4.elf", "CAFE0001/overlays/x.dtbo", "/pxelinux.cfg/default",
        "ipxe/undionly.kpxe", "grub/x86_64-efi/normal.mod", "rpi/start4.elf", "pxelinux.0",
        "cafe00011/start4.elf", "pxelinux.cfg", "grub",
    ]  # fmt: skip
    for name in names:
        parsed = (
            pxelinux.parse_config_name(name),
            grub.parse_config_name(name),
            raspberrypi.parse_path(name),
        )
        if any(p is not None for p in parsed):
            assert wants_database(name), name
    for name in ("ipxe/undionly.kpxe", "grub/x86_64-efi/normal.mod", "rpi/start4.elf", "x"):
        assert not wants_database(name), name
