"""The Proxmox VE driver against the fake PVE API (tests/hypervisors/fakes/proxmox_api.py),
spoken to through proxmoxer unmodified, over HTTPS with a throw-away CA.

Assertions look at the fake's recorded state (VM configs, volumes, HA
resources, requests), not only at what the driver returns.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from hypervisors.drivers import base
from hypervisors.drivers.base import Capability, Disk, Nic, PowerAction, PowerState, VMSpec
from hypervisors.drivers.proxmox import ProxmoxDriver
from tests.hypervisors.fakes.common import TLSFiles, make_tls, serve
from tests.hypervisors.fakes.proxmox_api import GIB, FakePVE, Handler

PASSWORD = "Pa55-word-NEVER-in-text"
TOKEN_ID, TOKEN = "pureboot@pve!ci", "0b7e5c1a-token-NEVER-in-text"
AUDITOR_ID, AUDITOR = "auditor@pve!ro", "9c2f-auditor-NEVER-in-text"
SECRETS = (PASSWORD, TOKEN, AUDITOR)
MAC0, MAC1 = "52:54:00:12:34:56", "52:54:00:12:34:57"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls(tmp_path_factory.mktemp("pve-tls"))


@pytest.fixture
def cluster(tls: TLSFiles) -> Iterator[tuple[FakePVE, str]]:
    pve = FakePVE(PASSWORD, {TOKEN_ID: (TOKEN, True), AUDITOR_ID: (AUDITOR, False)})
    pve.add_vm(
        9000,
        "pve1",
        template=True,
        name="debian-12",
        cores="2",
        memory="2048",
        scsi0="local-lvm:8",
        net0="virtio=BC:24:11:00:00:01,bridge=vmbr0",
        net1="virtio=BC:24:11:00:00:02,bridge=vmbr1",
        boot="order=scsi0;net0",
        ostype="l26",
        scsihw="virtio-scsi-single",
    )
    web = pve.add_vm(
        100,
        "pve1",
        name="web-1",
        cores="2",
        sockets="2",
        memory="4096",
        virtio0="local-lvm:20",
        net0="virtio=BC:24:11:AA:BB:CC,bridge=vmbr0",
    )
    web.status = "running"
    pve.add_vm(
        101,
        "pve2",
        name="db-1",
        cores="1",
        memory="1024",
        scsi0="ceph:4",
        net0="e1000=BC:24:11:AA:BB:DD,bridge=vmbr1",
    )
    with serve(Handler, tls=tls, pve=pve) as (_server, url):
        yield pve, url


def connect(url: str, tls: TLSFiles, **overrides: object) -> ProxmoxDriver:
    settings: dict = {
        "endpoint": url,
        "username": "root@pam",
        "password": PASSWORD,
        "ca_pem": tls.ca_pem,
        "timeout": 10.0,
        **overrides,
    }
    return ProxmoxDriver(base.Connection(**settings))


@pytest.fixture
def driver(cluster: tuple[FakePVE, str], tls: TLSFiles) -> Iterator[ProxmoxDriver]:
    with connect(cluster[1], tls) as d:
        yield d


def spec(**overrides: object) -> VMSpec:
    fields: dict = {
        "name": "node-a1",
        "cpus": 4,
        "memory_mib": 3072,
        "nics": [Nic("vmbr0", MAC0), Nic("vmbr1", MAC1, model="e1000")],
        **overrides,
    }
    return VMSpec(**fields)


def tasks(pve: FakePVE, kind: str) -> list[str]:
    return [t.upid for t in pve.tasks.values() if t.type == kind]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


# --- health and inventory ----------------------------------------------------------


def test_declares_what_it_implements():
    assert ProxmoxDriver.name == "proxmox" and ProxmoxDriver.label == "Proxmox VE"
    assert ProxmoxDriver.capabilities == set(Capability)


def test_health_logs_in_with_a_ticket_and_reads_the_version(cluster, driver):
    pve, _url = cluster
    health = driver.health()
    assert health.ok and health.version == "8.2.4"
    assert "pve1" in health.message and "pve-manager/8.2.4" in health.message
    assert pve.requests[0][:2] == ("POST", "/access/ticket")
    assert pve.requests[0][2]["username"] == "root@pam"


def test_health_with_an_api_token_sends_no_login(cluster, tls):
    pve, url = cluster
    with connect(url, tls, username=TOKEN_ID, password="", token=TOKEN) as d:
        assert d.health().version == "8.2.4"
    assert all(path != "/access/ticket" for _method, path, _params in pve.requests)


def test_node_option_picks_the_node(cluster, tls):
    with connect(cluster[1], tls, options={"node": "pve2"}) as d:
        assert "node pve2" in d.health().message
    with connect(cluster[1], tls, options={"node": "pve9"}) as d, pytest.raises(base.NotFound):
        d.health()


def test_inventory(cluster, driver):
    pve, _url = cluster
    inv = driver.inventory()
    assert [(h.name, h.cluster, h.cpus, h.memory_mib, h.state) for h in inv.hosts] == [
        ("pve1", "lab", 16, 64 * 1024, "online"),
        ("pve2", "lab", 8, 32 * 1024, "online"),
    ]
    assert inv.hosts[0].memory_used_mib == 12 * 1024
    assert inv.clusters == ("lab",)
    storage = {s.name: s for s in inv.storage}
    assert set(storage) == {"local-lvm", "ceph"}  # "local" holds no VM images
    assert storage["local-lvm"].total_bytes == 100 * GIB
    assert storage["local-lvm"].free_bytes == (100 - 8 - 20) * GIB == pve.free("local-lvm")
    assert storage["ceph"].kind == "rbd"
    assert inv.networks == ("vmbr0", "vmbr1")
    assert [(t.id, t.name, t.cpus, t.memory_mib, t.disk_bytes, t.os) for t in inv.templates] == [
        ("9000", "debian-12", 2, 2048, 8 * GIB, "l26")
    ]
    vms = {v.id: v for v in inv.vms}
    assert set(vms) == {"100", "101"}  # the template is not a VM
    assert vms["100"].power == PowerState.RUNNING and vms["100"].host == "pve1"
    assert vms["100"].macs == ("bc:24:11:aa:bb:cc",) and vms["100"].cpus == 4
    assert vms["100"].memory_mib == 4096
    assert vms["101"].power == PowerState.STOPPED and vms["101"].host == "pve2"
    assert driver.templates() == inv.templates


def test_inventory_with_a_node_offline(cluster, driver):
    pve, _url = cluster
    pve.nodes["pve2"]["status"] = "offline"
    inv = driver.inventory()
    assert [(h.name, h.state) for h in inv.hosts] == [("pve1", "online"), ("pve2", "offline")]
    db = next(v for v in inv.vms if v.id == "101")
    assert (db.name, db.host, db.cpus, db.memory_mib) == ("db-1", "pve2", 1, 1024)
    assert db.macs == ()  # its config lives on the node that is down


def test_get_vm_and_missing_vms(cluster, driver):
    vm = driver.get_vm("101")
    assert (vm.name, vm.host, vm.macs, vm.power) == (
        "db-1",
        "pve2",
        ("bc:24:11:aa:bb:dd",),
        PowerState.STOPPED,
    )
    for missing in ("555", "web-1"):
        with pytest.raises(base.NotFound):
            driver.get_vm(missing)


# --- create --------------------------------------------------------------------------


def test_create_blank_vm(cluster, driver):
    pve, _url = cluster
    vm = driver.create_vm(
        spec(disks=[Disk(10 * GIB), Disk(GIB + GIB // 2, storage="ceph", interface="scsi")])
    )
    made = pve.vms[int(vm.id)]
    config = made.config
    assert made.node == "pve1" and made.status == "stopped"
    assert (config["name"], config["cores"], config["memory"]) == ("node-a1", "4", "3072")
    assert config["net0"].lower() == f"virtio={MAC0},bridge=vmbr0"
    assert config["net1"].lower() == f"e1000={MAC1},bridge=vmbr1"
    assert config["boot"] == "order=net0;virtio0"  # network first, then the first disk
    assert config["virtio0"] == f"local-lvm:vm-{vm.id}-disk-0,size=10G"
    assert config["scsi0"] == f"ceph:vm-{vm.id}-disk-1,size=2G"  # rounded up to whole GiB
    assert pve.volumes[f"local-lvm:vm-{vm.id}-disk-0"] == 10 * GIB
    assert "lock" not in config
    assert vm.power == PowerState.STOPPED and vm.macs == (MAC0, MAC1)
    assert (vm.cpus, vm.memory_mib) == (4, 3072)


def test_create_uefi_vm_gets_ovmf_and_an_efi_disk(cluster, driver):
    pve, _url = cluster
    vm = driver.create_vm(spec(firmware="uefi", disks=[Disk(2 * GIB)]))
    config = pve.vms[int(vm.id)].config
    assert config["bios"] == "ovmf" and config["efidisk0"].startswith("local-lvm:vm-")
    assert config["boot"] == "order=net0;virtio0"


def test_create_from_template_on_another_node(cluster, driver):
    pve, _url = cluster
    template_before = dict(pve.vms[9000].config)
    vm = driver.create_vm(
        spec(template="debian-12", host="pve2", nics=[Nic("vmbr1", MAC0)], disks=[Disk(5 * GIB)])
    )
    made = pve.vms[int(vm.id)]
    config = made.config
    assert made.node == "pve2" and made.status == "stopped" and "template" not in config
    assert config["scsi0"] == f"local-lvm:vm-{vm.id}-disk-0,size=8G"  # a full copy
    assert pve.volumes[f"local-lvm:vm-{vm.id}-disk-0"] == 8 * GIB
    assert config["net0"].lower() == f"virtio={MAC0},bridge=vmbr1" and "net1" not in config
    assert config["boot"] == "order=net0;scsi0"
    assert config["virtio0"] == f"local-lvm:vm-{vm.id}-disk-1,size=5G"
    assert (config["cores"], config["memory"], config["name"]) == ("4", "3072", "node-a1")
    assert "lock" not in config and pve.vms[9000].config == template_before
    clone = [p for m, path, p in pve.requests if path.endswith("/qemu/9000/clone")]
    assert clone == [{"newid": vm.id, "name": "node-a1", "full": "1"}]
    # A template on local storage cannot be cloned onto another node: moved after.
    moved = [(path, p) for m, path, p in pve.requests if path.endswith("/migrate")]
    assert moved == [(f"/nodes/pve1/qemu/{vm.id}/migrate", {"target": "pve2"})]


def test_create_from_template_by_vmid_with_the_storage_option(cluster, tls):
    pve, url = cluster
    with connect(url, tls, options={"storage": "ceph"}) as d:
        vm = d.create_vm(spec(template="9000", nics=[Nic("vmbr0", MAC0)]))
    assert pve.vms[int(vm.id)].config["scsi0"].startswith(f"ceph:vm-{vm.id}-disk-0,")


def test_create_with_ha_adds_a_stopped_ha_resource(cluster, driver):
    pve, _url = cluster
    vm = driver.create_vm(spec(ha=True))
    assert pve.ha == {f"vm:{vm.id}": "stopped"} and vm.ha
    assert pve.vms[int(vm.id)].status == "stopped"


# --- power, delete, migrate, HA ------------------------------------------------------


def test_power_cycle(cluster, driver):
    pve, _url = cluster
    db = pve.vms[101]
    driver.power("101", PowerAction.ON)
    assert db.status == "running" and driver.power_state("101") == PowerState.RUNNING
    driver.power("101", PowerAction.ON)  # already on: nothing to do
    assert len(tasks(pve, "qmstart")) == 1
    driver.power("101", PowerAction.REBOOT)
    assert db.resets == 1 and db.status == "running"
    driver.power("101", PowerAction.OFF)
    driver.power("101", PowerAction.OFF)
    assert db.status == "stopped" and len(tasks(pve, "qmstop")) == 1
    assert driver.power_state("101") == PowerState.STOPPED
    driver.power("101", PowerAction.REBOOT)  # a reboot of a stopped VM starts it
    assert db.status == "running" and db.resets == 1


def test_delete_stops_the_vm_and_removes_its_disks(cluster, driver):
    pve, _url = cluster
    pve.ha["vm:100"] = "started"
    driver.delete_vm("100")
    assert 100 not in pve.vms and pve.volumes_of(100) == []
    assert "vm:100" not in pve.ha
    assert "local-lvm:base-9000-disk-0" in pve.volumes  # the template's disk stays
    assert len(tasks(pve, "qmstop")) == 1 and len(tasks(pve, "qmdestroy")) == 1
    with pytest.raises(base.NotFound):
        driver.delete_vm("100")


def test_delete_refuses_a_template(cluster, driver):
    with pytest.raises(base.InvalidRequest, match="template"):
        driver.delete_vm("9000")
    assert 9000 in cluster[0].vms


def test_live_migration(cluster, driver):
    pve, _url = cluster
    driver.migrate_vm("100", "pve2")
    assert pve.vms[100].node == "pve2" and pve.vms[100].status == "running"
    migrate = [p for m, path, p in pve.requests if path.endswith("/migrate")]
    assert migrate == [{"target": "pve2", "with-local-disks": "1", "online": "1"}]
    driver.migrate_vm("100", "pve2")  # already there
    assert len(tasks(pve, "qmigrate")) == 1
    with pytest.raises(base.NotFound):
        driver.migrate_vm("100", "pve7")


def test_set_ha(cluster, driver):
    pve, _url = cluster
    driver.set_ha("100", True)
    driver.set_ha("100", True)
    assert pve.ha == {"vm:100": "started"} and driver.get_vm("100").ha
    driver.set_ha("100", False)
    assert pve.ha == {} and not driver.get_vm("100").ha


# --- faults ---------------------------------------------------------------------------


def test_closed_port_is_transient(tls):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with connect(f"https://127.0.0.1:{port}", tls) as d, pytest.raises(base.TransientError):
        d.health()


def test_a_silent_endpoint_times_out_within_the_connection_timeout(tls):
    with socket.socket() as sock:  # listens, never answers the TLS handshake
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        started = time.monotonic()
        with connect(f"https://127.0.0.1:{sock.getsockname()[1]}", tls, timeout=0.5) as d:
            with pytest.raises(base.TransientError):
                d.health()
        assert time.monotonic() - started < 5


def test_bad_credentials(cluster, tls, caplog):
    pve, url = cluster
    for logger in (None, "proxmoxer.core", "proxmoxer.backends.https", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=logger)
    attempts = [
        {"password": PASSWORD + "x"},
        {"username": TOKEN_ID, "password": "", "token": AUDITOR},
        {"username": "nobody@pve!ci", "password": "", "token": TOKEN},
    ]
    for overrides in attempts:
        d = connect(url, tls, **overrides)
        with pytest.raises(base.AuthenticationFailed) as caught:
            d.health()
        assert_no_secret(str(caught.value), repr(caught.value), repr(d), repr(d.connection))
    with connect(url, tls, username=TOKEN_ID, password="", token=TOKEN) as d:
        d.power("101", PowerAction.ON)
    with connect(url, tls) as d:
        d.power("101", PowerAction.OFF)
    assert "/status/start" in caplog.text  # the log was captured, and holds no secret
    assert_no_secret(caplog.text)


def test_unusable_connection_settings(cluster, tls):
    with pytest.raises(base.InvalidRequest, match="https"):
        connect(cluster[1].replace("https:", "http:"), tls).health()
    with pytest.raises(base.AuthenticationFailed, match="no password or token"):
        connect(cluster[1], tls, password="").health()
    with pytest.raises(base.AuthenticationFailed, match="USER@REALM!TOKENID"):
        connect(cluster[1], tls, password="", token=TOKEN).health()


def test_a_token_that_cannot_be_a_header_is_refused_without_echoing_it(cluster, tls):
    d = connect(cluster[1], tls, username=TOKEN_ID, password="", token=f"{TOKEN}\nX-Evil: 1")
    with pytest.raises(base.AuthenticationFailed) as caught:
        d.health()
    assert_no_secret(str(caught.value))


def test_a_read_only_token_cannot_write(cluster, tls):
    with connect(cluster[1], tls, username=AUDITOR_ID, password="", token=AUDITOR) as d:
        assert d.get_vm("101").name == "db-1"
        with pytest.raises(base.AuthenticationFailed, match="Permission check failed") as caught:
            d.power("101", PowerAction.ON)
    assert_no_secret(str(caught.value))
    assert cluster[0].vms[101].status == "stopped"


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_needs_the_right_ca(cluster, tls, tmp_path):
    _pve, url = cluster
    other = make_tls(tmp_path / "other")
    for overrides in ({"ca_pem": other.ca_pem}, {"ca_pem": ""}):
        with connect(url, tls, **overrides) as d, pytest.raises(base.TLSFailed) as caught:
            d.health()
        assert "certificate verify failed" in str(caught.value)
    before = set(Path(tempfile.gettempdir()).glob("pureboot-pve-ca-*"))
    d = connect(url, tls)
    assert d.health().ok
    (ca_file,) = set(Path(tempfile.gettempdir()).glob("pureboot-pve-ca-*")) - before
    assert ca_file.read_text() == tls.ca_pem  # the private copy of ca_pem requests reads
    assert os.stat(ca_file).st_mode & 0o077 == 0
    d.close()
    assert not ca_file.exists()
    with connect(url, tls, ca_pem="", verify_tls=False) as d:
        assert d.health().ok


def test_a_clone_that_fails_half_way_leaves_nothing(cluster, driver):
    pve, _url = cluster
    pve.fail_task("qmclone", "interrupted by signal")
    before = set(pve.vms)
    volumes = set(pve.volumes)
    with pytest.raises(base.PermanentError, match=r"task qmclone UPID:pve1:\S+ failed: clone"):
        driver.create_vm(spec(template="debian-12"))
    assert set(pve.vms) == before and set(pve.volumes) == volumes
    destroy = [p for m, path, p in pve.requests if m == "DELETE"]
    assert destroy and destroy[0]["skiplock"] == "1"  # the partial VM was locked


def test_a_failed_create_task_leaves_nothing(cluster, driver):
    pve, _url = cluster
    pve.fail_task("qmcreate", "got killed")
    before, volumes = set(pve.vms), set(pve.volumes)
    with pytest.raises(base.HypervisorError, match="task qmcreate"):
        driver.create_vm(spec(disks=[Disk(4 * GIB)]))
    assert set(pve.vms) == before and set(pve.volumes) == volumes


def test_a_half_made_vm_that_cannot_be_removed_is_named(cluster, tls):
    pve, url = cluster
    pve.fail_task("qmclone", "interrupted by signal")
    # An API token may not skip the clone's lock, so the clean-up fails.
    with connect(url, tls, username=TOKEN_ID, password="", token=TOKEN) as d:
        with pytest.raises(base.PermanentError) as caught:
            d.create_vm(spec(template="debian-12"))
    leftover = next(vm for vm in pve.vms.values() if vm.config.get("lock") == "clone")
    assert f"half-made VM {leftover.vmid} is left" in str(caught.value)
    assert "VM is locked (clone)" in str(caught.value)
    assert_no_secret(str(caught.value))


def test_a_vmid_taken_by_another_client_is_retried_and_left_alone(cluster, driver):
    pve, _url = cluster
    real = pve.get_nextid
    stale = iter(["100"])  # another client created VM 100 after nextid answered

    def nextid(params: dict, user: str) -> str:
        return next(stale, None) or real(params, user)

    pve.routes = [(m, p, nextid if r == real else r) for m, p, r in pve.routes]
    vm = driver.create_vm(spec())
    assert vm.id != "100" and pve.vms[int(vm.id)].config["name"] == "node-a1"
    assert pve.vms[100].config["name"] == "web-1" and pve.vms[100].status == "running"
    stale = iter(["100"] * 3)  # taken every time: give up, and leave VM 100 alone
    with pytest.raises(base.TransientError, match="VM 100 already exists"):
        driver.create_vm(spec(name="node-a2"))
    assert pve.vms[100].config["name"] == "web-1" and pve.vms[100].status == "running"
    assert not tasks(pve, "qmdestroy") and not tasks(pve, "qmstop")


def test_a_full_storage_is_a_quota_error_and_leaves_nothing(cluster, driver):
    pve, _url = cluster
    before, volumes = set(pve.vms), set(pve.volumes)
    with pytest.raises(base.QuotaExceeded, match="insufficient free space"):
        driver.create_vm(spec(disks=[Disk(GIB), Disk(1000 * GIB)]))
    assert set(pve.vms) == before and set(pve.volumes) == volumes


def test_missing_template_bridge_or_storage_is_not_found(cluster, driver):
    pve, _url = cluster
    before = set(pve.vms)
    with pytest.raises(base.NotFound, match="template 'centos-9'"):
        driver.create_vm(spec(template="centos-9"))
    with pytest.raises(base.NotFound, match="vmbr9"):
        driver.create_vm(spec(nics=[Nic("vmbr9", MAC0)]))
    with pytest.raises(base.NotFound, match="nfs"):
        driver.create_vm(spec(disks=[Disk(GIB, storage="nfs")]))
    assert set(pve.vms) == before
    assert not [r for r in pve.requests if r[0] == "POST" and r[1] != "/access/ticket"]


def test_a_task_that_never_ends_is_transient_and_named(cluster, tls):
    pve, url = cluster
    pve.hang_task("qmstart")
    started = time.monotonic()
    with connect(url, tls, timeout=1.0) as d, pytest.raises(base.TransientError) as caught:
        d.power("101", PowerAction.ON)
    assert "task qmstart UPID:pve2:" in str(caught.value) and "still running" in str(caught.value)
    assert time.monotonic() - started < 5


def test_the_fake_insists_on_the_csrf_token_for_ticket_writes(cluster, tls, tmp_path):
    _pve, url = cluster
    ca = tmp_path / "ca.pem"
    ca.write_text(tls.ca_pem)
    login = requests.post(
        f"{url}/api2/json/access/ticket",
        verify=str(ca),
        timeout=5,
        data={"username": "root@pam", "password": PASSWORD},
    ).json()["data"]
    cookie = {"PVEAuthCookie": login["ticket"]}
    start = f"{url}/api2/json/nodes/pve2/qemu/101/status/start"
    refused = requests.post(start, cookies=cookie, verify=str(ca), timeout=5)
    assert refused.status_code == 401 and "csrf" in refused.reason
    headers = {"CSRFPreventionToken": login["CSRFPreventionToken"]}
    done = requests.post(start, cookies=cookie, headers=headers, verify=str(ca), timeout=5)
    assert done.status_code == 200 and done.json()["data"].startswith("UPID:pve2:")
