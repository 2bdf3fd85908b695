"""The boot lab: real firmware boots through PureBoot in a private network namespace.

Each scenario powers QEMU machines on (SeaBIOS with the iPXE NIC ROM, or
OVMF), drives PureBoot through its REST API as an operator would, and asserts
on what the machine printed on its serial console and on the node's
lifecycle. The tiny Linux that plays installer and installed OS prints
``PBLAB:`` lines (tests/e2e/bootlab/init.sh).

Run with ``make lab`` (CI's lab leg). Needs root (namespaces, taps) and the
Debian packages named in tests/e2e/bootlab/artifacts.py; without them the
lab fails naming the package, it never skips.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from .bootlab import workflows
from .bootlab.lab import ADDRESS, BASE, Lab

pytestmark = pytest.mark.bootlab


@pytest.fixture(scope="module")
def lab():
    workdir = Path(tempfile.mkdtemp(prefix="pureboot-bootlab-"))
    lab = Lab(workdir)
    try:
        lab.up()
        lab.manage("import_workflows", str(workflows.write(workdir / "workflows")))
        yield lab
    finally:
        lab.down()
        keep = Path(__file__).resolve().parents[2] / "test-artifacts" / "bootlab"
        shutil.rmtree(keep, ignore_errors=True)
        keep.mkdir(parents=True, exist_ok=True)
        for pattern in ("logs/*.log", "vms/*/console-*.log", "vms/*/qemu-*.log", "dnsmasq.conf"):
            for path in workdir.glob(pattern):
                rel = path.relative_to(workdir)
                target = keep / str(rel).replace("/", "__")
                shutil.copyfile(path, target)
        shutil.rmtree(workdir, ignore_errors=True)


def install_to_active(lab: Lab, vm, firmware: str, local_timeout: float = 180) -> dict:
    """Discovery, assignment without a reboot, install, local boot, first boot."""
    vm.power_on()
    vm.wait_for("waiting for an assignment" if firmware == "bios" else "PureBoot", 90)
    node = lab.wait_node(vm.mac, state="discovered")
    assert node["firmware"] == firmware and node["arch"] == "x86_64"
    assert node["system_uuid"] == vm.uuid

    # The operator assigns a workflow; the waiting machine picks it up by itself.
    lab.change_state(node["id"], "pending", workflow="lab-install")
    vm.wait_for("PBLAB: installer started", 120)
    console = vm.wait_off(240)
    assert "PBLAB: installer config fetched" in console
    assert "PBLAB: reported installing" in console
    assert "PBLAB: image written" in console
    assert "PBLAB: reported installed" in console
    node = lab.wait_node(vm.mac, state="installed", timeout=10)
    assert node["install_attempts"] == 1

    # Next power-on: told to boot the local disk, which reports the first boot.
    console = vm.boot(local_timeout)
    assert "PBLAB: installer started" not in console
    assert "PBLAB: booted from the local disk" in console
    assert "PBLAB: reported active" in console
    return lab.wait_node(vm.mac, state="active", timeout=10)


@pytest.fixture(scope="module")
def active_bios(lab):
    """Scenario 1's machine: installed through PureBoot and active (built once)."""
    vm = lab.vm("bios1", "52:54:00:b0:00:01", "bios")
    node = install_to_active(lab, vm, "bios")
    return vm, node


def boots_disk_without_pureboot(lab: Lab, vm, timeout: float = 120) -> str:
    """Power on; PureBoot's DHCP must not answer; the machine boots its disk."""
    console = vm.boot(timeout)
    assert "PBLAB: booted from the local disk" in console
    assert "PBLAB: installer started" not in console
    assert "net0: 10.99.0." not in console  # iPXE got no IPv4 address from PureBoot
    assert f"{vm.mac} ignored" in lab.dhcp_log()
    return console


def test_1_bios_ipxe_discover_install_local_boot_no_reinstall(lab, active_bios):
    vm, node = active_bios
    assert node["install_attempts"] == 1
    first_boot = vm.output()
    assert "PBLAB: first boot done" in first_boot

    # Another power-on: the disk again, no reinstall, no new install attempt.
    console = boots_disk_without_pureboot(lab, vm)
    assert "PBLAB: not the first boot" in console
    again = lab.wait_node(vm.mac, state="active", timeout=5)
    assert again["install_attempts"] == 1
    runs = lab.api("GET", f"/api/v1/nodes/{node['id']}/runs")["results"]
    assert len(runs) == 1 and runs[0]["status"] == "succeeded", runs
    # Its history: discovered, assigned, installing, installed, active; one row each.
    states = [
        e["to_state"]
        for e in reversed(lab.events(node["id"]))
        if e["kind"] in ("created", "transition")
    ]
    assert states == ["discovered", "pending", "installing", "installed", "active"], states


def test_5_controller_down_machines_boot_their_disks(lab, active_bios):
    vm, _ = active_bios
    # An existing server PureBoot discovered but nobody assigned yet: DHCP
    # still answers it, and the controller's first-stage URL is what fails.
    waiting = lab.vm("bios-d", "52:54:00:b0:00:05", "bios", disk="os")
    lab.stop_controller()
    try:
        console = waiting.boot(150)
        assert "net0: 10.99.0." in console  # DHCP answered with the iPXE URL ...
        assert "PBLAB: booted from the local disk" in console  # ... the fetch failed: disk
        assert "PBLAB: installer started" not in console
        boots_disk_without_pureboot(lab, vm)
    finally:
        lab.start_controller()
    assert lab.node(waiting.mac) is None  # nobody was there to register it


def test_6_active_and_retired_machines_get_no_dhcp_answer(lab, active_bios):
    vm, node = active_bios
    boots_disk_without_pureboot(lab, vm)
    # Retiring an installed machine takes two people (four-eye approval).
    asked = lab.api("DELETE", f"/api/v1/nodes/{node['id']}?reason=boot+lab")
    assert asked["approval_request"]["status"] == "pending"
    assert lab.node(vm.mac)["state"] == "active"
    approved = lab.api(
        "POST", f"/api/v1/nodes/{node['id']}/approve", {}, token=lab.second_admin_token()
    )
    assert approved["status"] == "executed"
    assert lab.node(vm.mac)["state"] == "retired"
    log_before = lab.dhcp_log().count(f"{vm.mac} ignored")
    boots_disk_without_pureboot(lab, vm)
    assert lab.dhcp_log().count(f"{vm.mac} ignored") > log_before
    # Nor does HTTP or TFTP answer it.
    status = lab.curl("-o", "/dev/null", "-w", "%{http_code}", f"{BASE}/boot/ipxe?mac={vm.mac}")
    assert status == "404"
    assert lab.tftp("pxelinux.0") == 0
    assert lab.tftp(f"pxelinux.cfg/01-{vm.mac.replace(':', '-')}") == 68  # file not found
    assert lab.node(vm.mac)["state"] == "retired"


def test_7_an_install_that_keeps_failing_ends_failed_and_boots_the_disk(lab):
    vm = lab.vm("bios-f", "52:54:00:b0:00:07", "bios", disk="os")
    node = lab.api(
        "POST",
        "/api/v1/nodes",
        {
            "hostname": "flaky",
            "arch": "x86_64",
            "firmware": "bios",
            "interfaces": [{"mac": vm.mac, "primary": True}],
        },
    )
    lab.change_state(node["id"], "pending", workflow="lab-crash")
    for attempt in (1, 2):  # PUREBOOT_MAX_INSTALL_ATTEMPTS=2 in the lab
        console = vm.boot(150)
        assert "PBLAB: installer crashed before reporting" in console, attempt
        assert lab.node(vm.mac)["install_attempts"] == attempt
    # Past the limit: failed, and told to boot the local disk.
    console = vm.boot(150)
    assert "PBLAB: installer started" not in console
    assert "PureBoot: flaky is failed; booting the local disk" in console
    assert "PBLAB: booted from the local disk" in console
    failed = lab.wait_node(vm.mac, state="failed", timeout=5)
    assert failed["install_attempts"] == 2
    # Failed machines wait for an operator, then boot their disk
    # (PUREBOOT_BOOT_WAIT_SECONDS=20 in the lab): never the installer again.
    console = vm.boot(150)
    assert "PureBoot: flaky is failed; waiting for an assignment" in console
    assert "PureBoot: flaky is failed; no assignment, booting the local disk" in console
    assert "PBLAB: booted from the local disk" in console
    assert "PBLAB: installer started" not in console
    assert lab.node(vm.mac)["install_attempts"] == 2


def test_2_uefi_pxe_discover_install_local_boot(lab):
    """OVMF's own PXE fetches snponly.efi over TFTP; iPXE then takes the HTTP path."""
    vm = lab.vm("uefi1", "52:54:00:e0:00:02", "uefi")
    # Installed: PureBoot's DHCP no longer answers it, so OVMF tries its
    # network entries in turn (PXEv4, HTTPv4, HTTPv6: each waits for a DHCP
    # answer that never comes) and then boots the disk. Slow, but what real
    # UEFI firmware does with the network first in its boot order.
    started = time.monotonic()
    install_to_active(lab, vm, "uefi", local_timeout=400)
    print(f"UEFI install + local boot: {time.monotonic() - started:.0f} s")
    assert "snponly.efi" in lab.log("tftp")
    assert "PXE-E18: Server response timeout" in vm.output()  # no DHCP answer (Rule E)
    assert f"{vm.mac} ignored" in lab.dhcp_log()
    assert lab.node(vm.mac)["install_attempts"] == 1


def pending_node(lab: Lab, mac: str, firmware: str, hostname: str, workflow: str) -> dict:
    node = lab.api(
        "POST",
        "/api/v1/nodes",
        {
            "hostname": hostname,
            "arch": "x86_64",
            "firmware": firmware,
            "interfaces": [{"mac": mac, "primary": True}],
        },
    )
    return lab.change_state(node["id"], "pending", workflow=workflow)


def test_3_uefi_http_boot_without_tftp(lab):
    """OVMF's HTTP Boot (PXE switched off): DHCP hands out an HTTP URL, no TFTP at all."""
    vm = lab.vm("uefi-http", "52:54:00:e0:00:03", "uefi", pxe=False)
    node = pending_node(lab, vm.mac, "uefi", "httpboot", "lab-install")
    tftp_before = lab.log("tftp")
    console = vm.boot(240)
    assert "Start HTTP Boot over IPv4" in console
    assert "PXE over IPv4" not in console
    assert "PBLAB: reported installed" in console
    assert lab.wait_node(vm.mac, state="installed", timeout=10)["id"] == node["id"]
    web = lab.log("web")
    assert '"HEAD /boot/http/snponly.efi HTTP/1.1" 200' in web  # OVMF asks the size first
    assert '"GET /boot/http/snponly.efi HTTP/1.1" 200' in web
    assert lab.log("tftp") == tftp_before  # not one TFTP transfer
    assert "HTTPClient" in lab.dhcp_log()
    # Now installed: an HTTP Boot request for it gets a fast 404 (the firmware
    # moves on to its disk), from its DHCP lease or by MAC.
    status = lab.curl(
        "-I",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{time_total}",
        f"{BASE}/boot/http/snponly.efi?mac={vm.mac}",
    )
    code, seconds = status.split()
    assert code == "404" and float(seconds) < 1.0, status


def test_4_bios_through_pxelinux(lab):
    """PXELINUX as the BIOS loader: its per-MAC config comes from the TFTP daemon."""
    lab.restart_dhcp(bios_loader="pxelinux")
    try:
        vm = lab.vm("bios-pxelinux", "52:54:00:b0:00:04", "bios")
        pending_node(lab, vm.mac, "bios", "pxe", "lab-install")
        console = vm.boot(240)
        assert "PXELINUX" in console
        assert "PureBoot: installing pxe" in console
        assert "PBLAB: reported installed" in console
        tftp = lab.log("tftp")
        assert "lpxelinux.0" in tftp
        assert "pxelinux.cfg/01-52-54-00-b0-00-04" in tftp
        lab.wait_node(vm.mac, state="installed", timeout=10)
        console = vm.boot(120)
        assert "PBLAB: booted from the local disk" in console
        assert "PBLAB: reported active" in console
        lab.wait_node(vm.mac, state="active", timeout=10)
    finally:
        lab.restart_dhcp()


PI_SERIAL = "a1b2c3d4"
PI_MAC = "dc:a6:32:5a:00:08"
PI4_DHCP = [  # what a Raspberry Pi 4 bootloader sends
    "-V",
    "PXEClient:Arch:00000:UNDI:002001",
    "-x",
    "0x5d:0000",
    "-x",
    "0x61:00" + "a1b2c3d4" * 4,
    "-O",
    "43",
]


def test_8_raspberry_pi_network_boot_at_the_protocol_level(lab):
    firmware = lab.dir / "pi-firmware"
    (firmware / "overlays").mkdir(parents=True, exist_ok=True)
    files = {
        "start4.elf": os.urandom(30_000),
        "fixup4.dat": os.urandom(5_000),
        "bootcode.bin": os.urandom(2_000),
        "bcm2711-rpi-4-b.dtb": os.urandom(4_000),
        "overlays/disable-bt.dtbo": os.urandom(1_000),
    }
    for name, data in files.items():
        (firmware / name).write_bytes(data)
    lab.manage("import_bootloaders", "--pi-firmware", str(firmware))
    node = lab.api(
        "POST",
        "/api/v1/nodes",
        {
            "hostname": "pi4",
            "arch": "aarch64",
            "firmware": "pi",
            "serial": PI_SERIAL,
            "interfaces": [{"mac": PI_MAC, "primary": True}],
        },
    )
    lab.change_state(node["id"], "pending", workflow="lab-pi")

    offer = lab.dhcp(PI_MAC, *PI4_DHCP)
    assert offer is not None, lab.dhcp_log()[-3000:]
    assert b"Raspberry Pi Boot" in bytes.fromhex(offer["opt43"])
    assert offer["siaddr"] == ADDRESS  # the PureBoot TFTP daemon

    # The Pi 4 network-boot sequence, under its serial.
    assert lab.tftp_get(f"{PI_SERIAL}/start4.elf") == files["start4.elf"]
    config = lab.tftp_get(f"{PI_SERIAL}/config.txt").decode()
    assert "kernel=kernel8.img" in config and "initramfs initramfs8 followkernel" in config
    assert lab.tftp_get(f"{PI_SERIAL}/fixup4.dat") == files["fixup4.dat"]
    cmdline = lab.tftp_get(f"{PI_SERIAL}/cmdline.txt").decode()
    assert "ds=nocloud-net;s=http://10.99.0.1:8080/api/v1/install/" in cmdline
    assert lab.tftp_get(f"{PI_SERIAL}/bcm2711-rpi-4-b.dtb") == files["bcm2711-rpi-4-b.dtb"]
    assert (
        lab.tftp_get(f"{PI_SERIAL}/overlays/disable-bt.dtbo") == files["overlays/disable-bt.dtbo"]
    )
    kernel = lab.tftp_get(f"{PI_SERIAL}/kernel8.img")
    assert kernel == (lab.boot_root / "lab" / "vmlinuz").read_bytes()
    assert (
        lab.tftp_get(f"{PI_SERIAL}/initramfs8")
        == (lab.boot_root / "lab" / "initrd.gz").read_bytes()
    )
    pi = lab.wait_node(PI_MAC, state="installing", timeout=5)
    assert pi["install_attempts"] == 1  # one boot, one attempt
    # Files that would rewrite the Pi's bootloader are never served.
    assert lab.tftp(f"{PI_SERIAL}/recovery.elf") == 68
