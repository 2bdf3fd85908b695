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

import shutil
import tempfile
from pathlib import Path

import pytest

from .bootlab import workflows
from .bootlab.lab import BASE, Lab

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


def install_to_active(lab: Lab, vm, firmware: str) -> dict:
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
    console = vm.boot(180)
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


def boots_disk_without_pureboot(lab: Lab, vm) -> str:
    """Power on; PureBoot's DHCP must not answer; the machine boots its disk."""
    console = vm.boot(120)
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
    retired = lab.api("DELETE", f"/api/v1/nodes/{node['id']}?reason=boot+lab")
    assert retired["state"] == "retired"
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
