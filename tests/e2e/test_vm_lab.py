"""The VM lab: a VM made through PureBoot on a real libvirt (QEMU under TCG)
network-boots PureBoot and installs through its normal boot path.

A libvirt daemon of the lab's own runs inside the lab's network namespace
(tests/e2e/bootlab/libvirtd.py). The test does what an operator does: it
registers the hypervisor, asks for a VM with a workflow whose first step is
``vm_create`` and whose second deploys the lab's OS image, and waits. PureBoot
registers the VM's MAC, creates it network boot first on the lab's bridge and
powers it on; the VM PXE-boots, the agent deploys the image, the VM restarts,
PureBoot's DHCP no longer answers it, its firmware boots the disk, and the
deployed system reports itself active. Deleting the VM is four-eye.

Run with ``make lab`` (CI's lab leg).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import libvirt
import pytest

from .bootlab import artifacts, libvirtd
from .bootlab.lab import ROOT, Lab
from .test_agent_lab import upload_and_save

pytestmark = pytest.mark.bootlab

ARTIFACTS = ROOT / "test-artifacts" / "vmlab"
WORKFLOW = """name: lab-vm-deploy
description: A VM on the lab's libvirt that gets the lab's OS image
arch: [x86_64]
firmware: [bios]
tasks:
  - type: vm_create
    hypervisor: lab-libvirt
    memory: 768
    cores: 1
    disks:
      - size: 80MiB
        storage: default
    networks:
      - name: bridge:pbbr0
  - type: image_deploy
    image: lab-os
    target: smallest
    network: keep
"""


@pytest.fixture(scope="module")
def lab():
    workdir = Path(tempfile.mkdtemp(prefix="pureboot-vmlab-"))
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    lab = Lab(workdir)
    uri = ""
    try:
        lab.up()
        lab.manage("build_agent", "--cache", str(artifacts.cache_dir() / "agent"), timeout=1800)
        uri = libvirtd.start(lab)
        lab.libvirt_uri = uri
        lab.approver = lab.second_admin_token()
        yield lab
    finally:
        if uri:
            libvirtd.stop(lab, uri)
        lab.down()
        for pattern in ("logs/*.log", "libvirt/consoles/*.log"):
            for path in workdir.glob(pattern):
                target = ARTIFACTS / str(path.relative_to(workdir)).replace("/", "__")
                shutil.copyfile(path, target)
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_vm_made_through_libvirt_installs_through_pureboot_and_then_boots_its_disk(lab):
    upload_and_save(lab, lab.os_image, "lab-os", "raw", WORKFLOW)
    hypervisor = lab.api(
        "POST",
        "/api/v1/hypervisors",
        {
            "name": "lab-libvirt",
            "type": "libvirt",
            "endpoint": lab.libvirt_uri,
            "options": {
                "storage_pool": "default",
                "template_pool": "templates",
                "domain_type": "qemu",
                "host_networks": "bridge:pbbr0",
                "console_log_dir": str(libvirtd.consoles(lab)),
            },
        },
    )
    # SQLite mode: the first sync ran in the web process on commit.
    hypervisor = lab.api("GET", f"/api/v1/hypervisors/{hypervisor['id']}")
    assert hypervisor["health"] == "ok", hypervisor
    assert hypervisor["version"].startswith("QEMU"), hypervisor

    asked = lab.api(
        "POST",
        f"/api/v1/hypervisors/{hypervisor['id']}/vms",
        {"name": "vm1", "workflow": "lab-vm-deploy"},
    )
    vm = asked["vm"]
    mac = vm["macs"][0]
    node = lab.node(mac)
    assert node["state"] == "pending" and node["workflow"] == "lab-vm-deploy"
    vm = lab.api("GET", f"/api/v1/vms/{vm['id']}")
    assert vm["status"] == "present" and vm["power"] == "running", vm

    conn = libvirt.open(lab.libvirt_uri)
    domain = conn.lookupByUUIDString(vm["platform_id"])
    xml = domain.XMLDesc(0)
    assert f"<mac address='{mac}'/>" in xml and "<boot order='1'/>" in xml

    # PXE -> iPXE -> the agent deploys the image -> the VM restarts -> the firmware,
    # unanswered by PureBoot's DHCP, boots the disk -> the deployed system reports.
    lab.wait_node(mac, state="installed", timeout=900)
    node = lab.wait_node(mac, state="active", timeout=600)
    console = (libvirtd.consoles(lab) / "vm1.log").read_text(errors="replace")
    assert "PBLAB: booted from the local disk" in console, console[-3000:]
    assert "PBLAB: reported active" in console, console[-3000:]
    runs = lab.api("GET", f"/api/v1/nodes/{node['id']}/runs")["results"]
    assert runs[0]["status"] == "succeeded"
    events = [e["message"] for e in lab.events(node["id"])]
    assert any("VM created on lab-libvirt" in m for m in events), events

    # Templates: a volume put in the template pool is found by templates/sync.
    pool = conn.storagePoolLookupByName("templates")
    pool.createXML(
        "<volume><name>golden.qcow2</name><capacity unit='MiB'>16</capacity>"
        "<target><format type='qcow2'/></target></volume>",
        0,
    )
    lab.api("POST", "/api/v1/templates/sync", {})
    templates = lab.api("GET", f"/api/v1/hypervisors/{hypervisor['id']}/templates")["results"]
    assert [t["name"] for t in templates] == ["golden.qcow2"]

    # Deleting the VM waits for a second person; then it and its disk are gone.
    asked = lab.api("DELETE", f"/api/v1/vms/{vm['id']}", {"reason": "lab done"})
    assert asked["code"] == "approval_required"
    assert conn.lookupByUUIDString(vm["platform_id"]).name() == "vm1"  # not yet
    request = asked["approval_request"]["id"]
    lab.api("POST", f"/api/v1/approvals/{request}/approve", {}, token=lab.approver)
    vm = lab.api("GET", f"/api/v1/vms/{vm['id']}")
    assert vm["status"] == "deleted", vm
    assert [d.name() for d in conn.listAllDomains()] == []
    assert conn.storagePoolLookupByName("default").listVolumes() == []
    conn.close()
