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
from .bootlab.lab import Lab

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


def test_bios_ipxe_discover_install_local_boot_no_reinstall(lab):
    vm = lab.vm("bios1", "52:54:00:b0:00:01", "bios")
    node = install_to_active(lab, vm, "bios")

    # Another power-on: the disk again, no reinstall, no new install attempt.
    console = vm.boot(180)
    assert "PBLAB: booted from the local disk" in console
    assert "PBLAB: not the first boot" in console
    assert "PBLAB: installer started" not in console
    again = lab.wait_node(vm.mac, state="active", timeout=5)
    assert again["install_attempts"] == node["install_attempts"] == 1
    runs = lab.api("GET", f"/api/v1/nodes/{node['id']}/runs")["results"]
    assert [r["status"] for r in runs] == ["succeeded"] or len(runs) == 1
