"""Raspberry Pi 3, 4 and 5 over TFTP as their boot ROM and EEPROM ask, through the real daemon.

Each generation's file sequence is sent to PureBoot's TFTP daemon (the
helper-process resolver the production daemon uses), under each
``TFTP_PREFIX`` mode: the serial folder, the MAC folder, and no folder (the
Pi found by the address dnsmasq leased it). The DHCP half (option 43
"Raspberry Pi Boot" for each generation's OUI) is in test_dhcp.py's lab.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bootserve import raspberrypi, tftp_resolver
from bootserve.raspberrypi import PiPath, parse_path
from bootserve.tftp import BootServer
from bootserve.tftp_files import resolve
from nodes import services as node_services
from nodes.models import Node
from tests.factories import make_node, make_workflow
from workflows.models import WorkflowRun

from . import tftpclient

SERIAL = "5a5a0001"
MAC = "dc:a6:32:5a:00:01"
LEASED = "10.99.0.77"
WORKFLOW = """\
name: {name}
arch: [aarch64]
tasks:
  - type: pxe_boot
    kernel: /pi/vmlinuz
    initrd: /pi/initrd.img
    cmdline: ip=dhcp
  - type: ubuntu_autoinstall
"""
# What each generation asks for in one network boot, in order.
PI3 = ["start.elf", "config.txt", "fixup.dat", "config.txt", "cmdline.txt", "kernel8.img"]
PI3 += ["initramfs8"]
PI4 = ["start4.elf", "config.txt", "start4.elf", "fixup4.dat", "config.txt"]
PI4 += ["bcm2711-rpi-4-b.dtb", "cmdline.txt", "kernel8.img", "initramfs8"]
PI5 = ["config.txt", "bcm2712-rpi-5-b.dtb", "cmdline.txt", "kernel8.img", "initramfs8"]
GENERATIONS = {"pi3": PI3, "pi4": PI4, "pi5": PI5}


@pytest.fixture
def boot_root(settings, tmp_path):
    root = tmp_path / "boot"
    files = {
        "bootcode.bin": b"pi3 bootcode",
        "rpi/bootcode.bin": b"pi3 bootcode",
        "rpi/start.elf": b"pi3 start",
        "rpi/fixup.dat": b"pi3 fixup",
        "rpi/start4.elf": b"pi4 start",
        "rpi/fixup4.dat": b"pi4 fixup",
        "rpi/bcm2711-rpi-4-b.dtb": b"pi4 dtb",
        "rpi/bcm2712-rpi-5-b.dtb": b"pi5 dtb",
        "pi/vmlinuz": b"the install kernel",
        "pi/initrd.img": b"the install initrd",
    }
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    leases = tmp_path / "leases"
    leases.write_text(f"{int(time.time()) + 3600} {MAC} {LEASED} * *\n")
    settings.PUREBOOT_BOOT_ROOT = root
    settings.PUREBOOT_PUBLIC_URL = "http://10.99.0.1:8000"
    settings.PUREBOOT_DHCP_LEASEFILE = str(leases)
    raspberrypi.BOOTS.clear()
    yield root
    raspberrypi.BOOTS.clear()


def pending_pi(**fields) -> Node:
    node = make_node(firmware="pi", arch="aarch64", **fields)
    workflow = make_workflow("pi", WORKFLOW.format(name="pi"))
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=workflow)
    return Node.objects.get(pk=node.pk)


@pytest.mark.parametrize(
    "path,expected",
    [
        ("dc-a6-32-5a-00-01/start4.elf", PiPath(None, "start4.elf", MAC)),
        ("DC-A6-32-5A-00-01/config.txt", PiPath(None, "config.txt", MAC)),
        ("config.txt", PiPath(None, "config.txt")),
        ("kernel8.img", PiPath(None, "kernel8.img")),
        ("overlays/disable-bt.dtbo", PiPath(None, "overlays/disable-bt.dtbo")),
    ],
)
def test_mac_folders_and_root_names_are_pi_paths(path, expected):
    assert parse_path(path) == expected
    assert tftp_resolver.wants_database(path)


@pytest.mark.parametrize(
    "path", ["01-00-00-00-00-00/start4.elf", "dc-a6-32-5a-00/start4.elf", "undionly.kpxe"]
)
def test_other_names_are_not(path):
    assert parse_path(path) is None  # a multicast MAC, a short one, an x86 loader


def serve_boot(names: list[str], folder: str, peer_ip: str = LEASED) -> dict:
    """Fetch ``names`` through a running PureBoot TFTP daemon; file bytes or the error code."""
    srv = BootServer("127.0.0.1", 0, resolve, retries=3, timeout=2)
    port = srv._listener.getsockname()[1]
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    got: dict = {}
    try:
        for name in ["bootcode.bin", *names]:
            path = f"{folder}/{name}" if folder and name != "bootcode.bin" else name
            try:
                got.setdefault(name, tftpclient.read("127.0.0.1", port, path, {})[0])
            except tftpclient.TftpError as exc:
                got.setdefault(name, exc.code)
    finally:
        srv._should_stop = True
        tftpclient.send_raw("127.0.0.1", port, b"\x00", timeout=0.2)
        thread.join(5)
    return got


@pytest.mark.django_db
@pytest.mark.parametrize("generation", GENERATIONS)
@pytest.mark.parametrize("prefix", ["serial", "mac"])
def test_each_generation_installs_under_each_prefix(boot_root, generation, prefix):
    node = pending_pi(serial=SERIAL, macs=[MAC])
    folder = SERIAL if prefix == "serial" else MAC.replace(":", "-")
    got = {name: resolve(f"{folder}/{name}", (LEASED, 1)) for name in GENERATIONS[generation]}
    node.refresh_from_db()
    assert node.state == "installing" and node.install_attempts == 1
    config = got["config.txt"].decode()
    assert "arm_64bit=1" in config and "kernel=kernel8.img" in config
    cmdline = got["cmdline.txt"].decode()
    assert WorkflowRun.objects.filter(node=node).count() == 1
    assert f"pureboot.url=http://10.99.0.1:8000 pureboot.node={node.pk}" in cmdline
    assert "ds=nocloud-net;s=http://10.99.0.1:8000/api/v1/install/" in cmdline  # its token
    assert Path(got["kernel8.img"]).read_bytes() == b"the install kernel"
    assert Path(got["initramfs8"]).read_bytes() == b"the install initrd"
    firmware = {"pi3": ("start.elf", b"pi3 start"), "pi4": ("start4.elf", b"pi4 start")}
    if generation in firmware:
        name, content = firmware[generation]
        assert Path(got[name]).read_bytes() == content
    if generation == "pi5":
        assert Path(got["bcm2712-rpi-5-b.dtb"]).read_bytes() == b"pi5 dtb"


@pytest.mark.django_db
def test_without_a_folder_the_leased_address_names_the_pi(boot_root):
    node = pending_pi(serial=SERIAL, macs=[MAC])
    got = {name: resolve(name, (LEASED, 1)) for name in PI4}
    assert Node.objects.get(pk=node.pk).state == "installing"
    assert f"pureboot.node={node.pk}" in got["cmdline.txt"].decode()
    # An address nobody leased: no Pi to answer for, every name "not found".
    assert all(resolve(name, ("10.99.0.250", 1)) is None for name in PI4)


@pytest.mark.django_db
@pytest.mark.parametrize("generation", GENERATIONS)
def test_an_installed_pi_gets_not_found_for_every_file_so_it_boots_its_disk(boot_root, generation):
    make_node("installed", firmware="pi", arch="aarch64", serial=SERIAL, macs=[MAC])
    for folder in (SERIAL, MAC.replace(":", "-"), ""):
        for name in GENERATIONS[generation]:
            path = f"{folder}/{name}" if folder else name
            assert resolve(path, (LEASED, 1)) is None, path


@pytest.mark.django_db(transaction=True)
def test_the_daemon_serves_each_generation_by_serial_mac_and_root(boot_root):
    """Real TFTP transfers (tsize, blocks) of a Pi 3 by serial and a Pi 5 by MAC."""
    node = pending_pi(serial=SERIAL, macs=[MAC])
    by_serial = serve_boot(PI3, SERIAL)
    assert by_serial["bootcode.bin"] == b"pi3 bootcode"
    assert by_serial["start.elf"] == b"pi3 start"
    assert b"pureboot.node=" in by_serial["cmdline.txt"]
    assert by_serial["kernel8.img"] == b"the install kernel"
    raspberrypi.BOOTS.clear()  # the same Pi now as a Pi 5 under its MAC: a new boot
    by_mac = serve_boot(PI5, MAC.replace(":", "-"))
    assert by_mac["bcm2712-rpi-5-b.dtb"] == b"pi5 dtb"
    assert by_mac["initramfs8"] == b"the install initrd"
    node.refresh_from_db()
    assert node.state == "installing"
