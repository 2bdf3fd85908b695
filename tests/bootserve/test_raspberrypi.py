"""Raspberry Pi network boot: ``<serial>/<file>`` over TFTP, answered from the decision engine."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from bootserve import raspberrypi
from bootserve.engine import Decision, Kind, Step
from bootserve.install import InstallBoot
from bootserve.raspberrypi import PiAnswer, PiPath, parse_path
from bootserve.tftp import BootServer
from bootserve.tftp_files import resolve
from nodes import services as node_services
from nodes.models import Node, NodeEvent
from tests.factories import make_node, make_user, make_workflow
from workflows import services as workflow_services
from workflows.models import WorkflowRun

from . import tftpclient

SERIAL = "1234abcd"
PEER = ("10.99.0.60", 40187)
PI_WORKFLOW = """\
name: {name}
tasks:
  - type: pxe_boot
    kernel: /pi/vmlinuz
    initrd: /pi/initrd.img
    cmdline: ip=dhcp
  - type: ubuntu_autoinstall
"""
# The Pi 4 sequence of one network boot (the firmware asks for config.txt
# twice and for start4.elf to probe, then to load), the initramfs last.
BOOT_SEQUENCE = [
    "start4.elf",
    "config.txt",
    "start4.elf",
    "fixup4.dat",
    "config.txt",
    "bcm2711-rpi-4-b.dtb",
    "overlays/overlay_map.dtb",
    "overlays/disable-bt.dtbo",
    "cmdline.txt",
    "kernel8.img",
    "initramfs8",
]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(raspberrypi.BOOTS, "clock", fake)
    raspberrypi.BOOTS.clear()
    yield fake
    raspberrypi.BOOTS.clear()


@pytest.fixture
def boot_root(settings, tmp_path, clock):
    root = tmp_path / "boot"
    files = {
        "rpi/start4.elf": b"start4 firmware",
        "rpi/fixup4.dat": b"fixup4",
        "rpi/bcm2711-rpi-4-b.dtb": b"dtb",
        "rpi/overlays/disable-bt.dtbo": b"overlay",
        "rpi/recovery.elf": b"would rewrite the EEPROM",
        "rpi/pieeprom.upd": b"would rewrite the EEPROM",
        "pi/vmlinuz": b"the install kernel",
        "pi/initrd.img": b"the install initrd",
    }
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    settings.PUREBOOT_BOOT_ROOT = root
    settings.PUREBOOT_PUBLIC_URL = "http://10.99.0.1:8000"
    settings.PUREBOOT_MAX_INSTALL_ATTEMPTS = 3
    settings.PUREBOOT_DISCOVERY = True
    return root


def get(name: str, serial: str = SERIAL) -> bytes | Path | None:
    return resolve(f"{serial}/{name}", PEER)


def boot(serial: str = SERIAL, sequence=BOOT_SEQUENCE) -> dict[str, bytes | Path | None]:
    return {name: get(name, serial) for name in sequence}


def make_pi(state: str = "discovered", serial: str = SERIAL, **fields) -> Node:
    return make_node(state, firmware="pi", arch="aarch64", serial=serial, **fields)


def pending_pi(serial: str = SERIAL, content: str = PI_WORKFLOW, **fields) -> Node:
    node = make_pi(serial=serial, **fields)
    workflow = make_workflow(f"pi-{serial}", content.format(name=f"pi-{serial}"))
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=workflow)
    return Node.objects.get(pk=node.pk)


def starts(node: Node) -> int:
    return NodeEvent.objects.filter(node=node, to_state="installing").count()


# --- paths -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,expected",
    [
        ("1234abcd/config.txt", PiPath("1234abcd", "config.txt")),
        ("/1234abcd/start4.elf", PiPath("1234abcd", "start4.elf")),
        ("1234ABCD/cmdline.txt", PiPath("1234abcd", "cmdline.txt")),
        ("1234abcd/overlays/disable-bt.dtbo", PiPath("1234abcd", "overlays/disable-bt.dtbo")),
    ],
)
def test_pi_paths_map_to_the_serial(path, expected):
    assert parse_path(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "1234abcd/../x",
        "1234abcd/overlays/../../x",
        "1234abcd/./config.txt",
        "1234abcd//config.txt",
        "1234abcd/",
        "1234abcd",
        "1234abc/config.txt",  # 7 digits
        "1234abcde/config.txt",  # 9
        "0x1234abcd/config.txt",
        "000000001234abcd/config.txt",
        "1234abcg/config.txt",
        "1234abcd/a\\b",
        "1234abcd/con\x01fig.txt",
        "1234abcd/config.txt\x00",
        "//1234abcd/config.txt",
        "undionly.kpxe",
        "bootcode.bin",  # the same for every Pi 3: a static file
        "pxelinux.cfg/default",
        "grub/grub.cfg",
        "",
    ],
)
def test_other_paths_are_not_pi_paths(path):
    assert parse_path(path) is None


# --- one boot, one boot request ----------------------------------------------


@pytest.mark.django_db
def test_a_pending_pi_installs_and_one_boot_counts_one_attempt(boot_root):
    node = pending_pi(hostname="pi01")
    got = boot()
    node.refresh_from_db()
    assert node.state == "installing" and node.install_attempts == 1
    assert starts(node) == 1 and WorkflowRun.objects.filter(node=node).count() == 1
    assert got["start4.elf"] == (boot_root / "rpi/start4.elf").resolve()
    assert got["fixup4.dat"] == (boot_root / "rpi/fixup4.dat").resolve()
    assert got["bcm2711-rpi-4-b.dtb"] == (boot_root / "rpi/bcm2711-rpi-4-b.dtb").resolve()
    assert got["overlays/disable-bt.dtbo"].read_bytes() == b"overlay"
    assert got["overlays/overlay_map.dtb"] is None  # not imported: the firmware copes
    assert got["kernel8.img"].read_bytes() == b"the install kernel"
    assert got["initramfs8"].read_bytes() == b"the install initrd"
    config = got["config.txt"].decode()
    assert config.splitlines()[1:] == [
        "arm_64bit=1",
        "kernel=kernel8.img",
        "initramfs initramfs8 followkernel",
        "enable_uart=1",
    ]
    assert config.startswith("# PureBoot: installing pi01")
    cmdline = got["cmdline.txt"].decode()
    assert cmdline.endswith("\n") and cmdline.count("\n") == 1
    assert cmdline.startswith("console=serial0,115200 console=tty1 ip=dhcp autoinstall ")
    token = re.search(r"ds=nocloud-net;s=http://10\.99\.0\.1:8000/api/v1/install/(\S+)/", cmdline)
    assert token, cmdline
    assert workflow_services.resolve_token(token.group(1)).node_id == node.pk


def _run_of(cmdline: bytes) -> int:
    from workflows.services import resolve_token

    token = cmdline.decode().split("/api/v1/install/")[1].split("/")[0]
    return resolve_token(token).pk


@pytest.mark.django_db
def test_each_boot_retries_once_until_the_limit_then_fails(boot_root, settings):
    settings.PUREBOOT_MAX_INSTALL_ATTEMPTS = 2
    settings.PUREBOOT_BOOT_SESSION_SECONDS = 0  # each Pi boot here is a new boot session
    node = pending_pi()
    first = boot()
    assert Node.objects.get(pk=node.pk).install_attempts == 1
    second = boot()  # the initramfs ended the first boot: this is a new one
    node.refresh_from_db()
    assert node.state == "installing" and node.install_attempts == 2
    # The same run: both tokens name it (a token carries its signing time, so
    # two boots a second apart get different strings for the same run).
    assert _run_of(second["cmdline.txt"]) == _run_of(first["cmdline.txt"])
    assert second["kernel8.img"] is not None
    third = boot()
    node.refresh_from_db()
    assert node.state == "failed"
    assert set(third.values()) == {None}  # not found: the Pi boots its SD card


@pytest.mark.django_db
def test_the_last_allowed_attempt_still_gets_its_files(boot_root, settings):
    settings.PUREBOOT_MAX_INSTALL_ATTEMPTS = 1
    node = pending_pi()
    got = boot()  # attempt 1 of 1: decide() alone would now say "fail"
    assert None not in (got["config.txt"], got["cmdline.txt"], got["initramfs8"])
    assert Node.objects.get(pk=node.pk).state == "installing"


@pytest.mark.django_db
def test_a_boot_without_its_initramfs_ends_when_the_pi_goes_quiet(boot_root, clock, settings):
    settings.PUREBOOT_BOOT_SESSION_SECONDS = 0  # each Pi boot here is a new boot session
    node = pending_pi()
    boot(sequence=["start4.elf", "config.txt", "start4.elf", "fixup4.dat"])
    clock.now += 10
    boot(sequence=["start4.elf", "config.txt"])  # same boot (a retried probe)
    assert Node.objects.get(pk=node.pk).install_attempts == 1
    clock.now += raspberrypi.BOOT_IDLE_SECONDS + 1
    assert get("start4.elf") is not None
    assert Node.objects.get(pk=node.pk).install_attempts == 2


@pytest.mark.django_db
def test_later_files_alone_change_nothing(boot_root):
    node = pending_pi()
    for name in ("cmdline.txt", "kernel8.img", "initramfs8", "fixup4.dat"):
        assert get(name) is None  # no boot request yet: no install to serve
    node.refresh_from_db()
    assert node.state == "pending" and node.install_attempts == 0


@pytest.mark.django_db
def test_an_operator_change_in_the_middle_makes_the_next_first_file_a_new_boot(boot_root):
    assert get("start4.elf") is None  # unknown: registered, then not found
    node = Node.objects.get(serial=SERIAL)
    workflow = make_workflow("pi-late", PI_WORKFLOW.format(name="pi-late"))
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=workflow)
    assert get("start4.elf") is not None  # seconds later, the node is pending
    assert Node.objects.get(pk=node.pk).state == "installing"


# --- per state ---------------------------------------------------------------


@pytest.mark.django_db
def test_an_unknown_pi_is_registered_by_its_serial_and_moves_on(boot_root):
    got = boot(serial="9ffefdef")
    assert set(got.values()) == {None}
    node = Node.objects.get(serial="9ffefdef")
    assert (node.state, node.firmware, node.arch) == ("discovered", "pi", "aarch64")
    assert not node.interfaces.exists()  # no MAC over TFTP; the serial recognises it
    boot(serial="9FFEFDEF")
    assert Node.objects.filter(serial="9ffefdef").count() == 1


@pytest.mark.django_db
def test_with_discovery_off_an_unknown_pi_is_not_registered(boot_root, settings):
    settings.PUREBOOT_DISCOVERY = False
    assert set(boot().values()) == {None}
    assert not Node.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "state", ["installed", "active", "discovered", "failed", "deprovisioning", "retired"]
)
def test_every_other_state_gets_not_found_for_every_file(boot_root, state):
    node = make_pi(state)
    workflow = make_workflow(f"pi-{state}", PI_WORKFLOW.format(name=f"pi-{state}"))
    Node.objects.filter(pk=node.pk).update(
        workflow=workflow, workflow_version=workflow.versions.get()
    )
    got = boot()
    assert set(got.values()) == {None}, got
    node.refresh_from_db()
    assert node.state == state and node.install_attempts == 0


@pytest.mark.django_db
def test_a_pi_whose_workflow_has_no_network_boot_waits(boot_root):
    pending_pi(content="name: {name}\ntasks:\n  - type: cloud_init\n")
    assert set(boot().values()) == {None}
    assert Node.objects.get(serial=SERIAL).state == "pending"


@pytest.mark.django_db
def test_a_kernel_only_reachable_over_http_is_not_served(boot_root):
    content = PI_WORKFLOW.replace("/pi/vmlinuz", "http://mirror.example/vmlinuz")
    pending_pi(content=content)
    assert set(boot().values()) == {None}


# --- files ---------------------------------------------------------------------


@pytest.mark.django_db
def test_firmware_per_serial_wins_and_other_names_are_never_served(boot_root):
    (boot_root / f"rpi/{SERIAL}").mkdir()
    (boot_root / f"rpi/{SERIAL}/start4.elf").write_bytes(b"this board's own firmware")
    pending_pi()
    pending_pi(serial="cafe0001")
    assert get("start4.elf").read_bytes() == b"this board's own firmware"
    assert get("start4.elf", "cafe0001").read_bytes() == b"start4 firmware"
    for name in ("recovery.elf", "pieeprom.upd", "autoboot.txt", "rpi/start4.elf", "vmlinuz"):
        assert get(name) is None, name
    # The TFTP root is not a Pi folder: the bootloader's unprefixed retry finds nothing.
    assert resolve("start4.elf", PEER) is None


@pytest.mark.django_db
def test_firmware_symlinked_out_of_the_boot_root_is_refused(boot_root, tmp_path):
    (tmp_path / "elsewhere.dtb").write_bytes(b"secret")
    (boot_root / "rpi/evil.dtb").symlink_to(tmp_path / "elsewhere.dtb")
    pending_pi()
    get("start4.elf")
    assert get("evil.dtb") is None


def test_rendered_files_keep_to_their_lines():
    evil = InstallBoot(
        "http://h/k", "http://h/i", "a\nkernel=evil.img", kernel_file="k", initrd_file="i"
    )
    answer = PiAnswer(
        Decision(Kind.INSTALL, Step.NONE, "t", "pi"), "pi\nkernel=x", "installing", "armhf", evil
    )
    config = raspberrypi.render_config(answer)
    assert [line for line in config.splitlines() if line.startswith("kernel=")] == [
        "kernel=kernel7l.img"
    ]
    assert "arm_64bit=0" in config and "initramfs initramfs7l followkernel" in config
    assert raspberrypi.render_cmdline(answer).count("\n") == 1
    waiting = PiAnswer(Decision(Kind.WAIT, Step.NONE, "t", "pi"), "n", "discovered", "aarch64")
    assert raspberrypi.render_config(waiting) is None
    assert raspberrypi.render_cmdline(waiting) is None


# --- registration without a MAC ------------------------------------------------


@pytest.mark.django_db
def test_a_pi_may_be_registered_by_serial_alone_and_a_pc_still_needs_a_mac(api):
    client = api(make_user("Admin"))
    pi = {"firmware": "pi", "arch": "aarch64", "serial": "0xABCD1234", "interfaces": []}
    resp = client.post("/api/v1/nodes", pi, format="json")
    assert resp.status_code == 201, resp.content
    assert resp.json()["serial"] == "abcd1234"
    pc = {"firmware": "uefi", "serial": "ABC123", "interfaces": []}
    resp = client.post("/api/v1/nodes", pc, format="json")
    assert resp.status_code == 400 and "at least one" in resp.json()["interfaces"][0]
    node = Node.objects.get(serial="abcd1234")
    with pytest.raises(ValidationError):  # no longer recognisable
        node_services.update_node(node.pk, node_services.SYSTEM, {"firmware": "uefi"})


# --- preview -----------------------------------------------------------------


@pytest.mark.django_db
def test_the_preview_shows_a_pis_files_without_changing_anything(api, boot_root, site_a):
    node = pending_pi(site=site_a, hostname="pi01")
    admin = api(make_user("Admin"))
    body = admin.get(f"/api/v1/nodes/{node.pk}/preview").json()
    assert set(body["boot"]) == {"rpi-config.txt", "rpi-cmdline.txt"}
    assert "kernel=kernel8.img" in body["boot"]["rpi-config.txt"]
    assert "PREVIEW-TOKEN" in body["boot"]["rpi-cmdline.txt"]
    assert body["boot"]["rpi-cmdline.txt"].startswith("console=serial0,115200")
    assert Node.objects.get(pk=node.pk).state == "pending" and not WorkflowRun.objects.exists()
    installed = make_pi("installed", serial="cafe0002", site=site_a)
    body = admin.get(f"/api/v1/nodes/{installed.pk}/preview").json()
    assert body["boot"] == {"rpi-config.txt": None, "rpi-cmdline.txt": None}


# --- through the real daemon ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_pi_boot_through_the_tftp_daemon(boot_root):
    node = pending_pi()
    srv = BootServer("127.0.0.1", 0, resolve, retries=3, timeout=2)
    port = srv._listener.getsockname()[1]
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        got = {}
        for name in BOOT_SEQUENCE:
            try:
                got[name] = tftpclient.read(
                    "127.0.0.1", port, f"{SERIAL}/{name}", {"tsize": "0", "blksize": "1024"}
                )[0]
            except tftpclient.TftpError as exc:
                got[name] = exc.code
        with pytest.raises(tftpclient.TftpError):
            tftpclient.read("127.0.0.1", port, "deadbeef/start4.elf")  # unknown: registered
    finally:
        srv._should_stop = True
        tftpclient.send_raw("127.0.0.1", port, b"\x00", timeout=0.2)
        thread.join(5)
    assert got["start4.elf"] == b"start4 firmware" and got["fixup4.dat"] == b"fixup4"
    assert b"kernel=kernel8.img" in got["config.txt"]
    assert got["cmdline.txt"].startswith(b"console=serial0,115200 console=tty1 ip=dhcp")
    assert got["kernel8.img"] == b"the install kernel"
    assert got["initramfs8"] == b"the install initrd"
    assert got["overlays/overlay_map.dtb"] == 1  # file not found
    node.refresh_from_db()
    assert node.state == "installing" and node.install_attempts == 1
    assert Node.objects.filter(serial="deadbeef", state="discovered").exists()
