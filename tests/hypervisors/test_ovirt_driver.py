"""The oVirt driver against the fake engine (tests/hypervisors/fakes/ovirt_api),
spoken to through ovirtsdk4 unmodified, over HTTPS with a throw-away CA.

Assertions look at the fake's recorded state (VMs, NICs, disks, storage,
requests, tokens), not only at what the driver returns.
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

from hypervisors.drivers import base
from hypervisors.drivers.base import Capability, Connection, Disk, Nic, PowerAction, VMSpec
from hypervisors.drivers.ovirt import OvirtDriver
from tests.hypervisors.fakes.common import TLSFiles, make_tls, serve
from tests.hypervisors.fakes.ovirt_api import BLANK_ID, GIB, MIB, FakeEngine, Fault, Handler, cannot

USER, PASSWORD = "admin@internal", "0v1rt-Pa55-NEVER-in-text"
MAC0, MAC1 = "56:6f:00:aa:bb:01", "56:6f:00:aa:bb:02"
DB_MAC = "56:6f:00:00:00:01"
CA_GLOB = "pureboot-ovirt-ca-*"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls(tmp_path_factory.mktemp("ovirt-tls"))


@pytest.fixture
def engine() -> FakeEngine:
    e = FakeEngine({USER: PASSWORD}, version="4.5.5", delay=0.05)
    lab = e.add_cluster("Default")
    host1 = e.add_host("host1", lab, memory=256 * GIB, free_memory=200 * GIB)
    e.add_host("host2", lab, cores=4, sockets=1, threads=2, memory=64 * GIB)
    data1 = e.add_domain("data1", 700 * GIB, 300 * GIB)
    e.add_domain("data2", 50 * GIB, 10 * GIB, storage_type="iscsi")
    e.add_domain("iso1", 90 * GIB, 10 * GIB, type="iso")
    for name in ("ovirtmgmt", "lab"):
        e.add_network(name)
    e.add_network("migration", vm_network=False)
    base_version = e.add_template(
        "rhel9", [(20 * GIB, data1)], ["ovirtmgmt", "lab"], cores=2, memory=4 * GIB
    )
    e.add_template(
        "rhel9",
        [(30 * GIB, data1)],
        ["ovirtmgmt", "lab"],
        cores=2,
        memory=4 * GIB,
        os_type="rhel_9x64",
        version=2,
        version_name="9.4",
        base=base_version.id,
    )
    db = e.add_vm("db01", lab, "up", host1, cores=4, memory=8 * GIB, ha=True)
    db.nics.append(type(base_version.nics[0])("nic1", DB_MAC, e.profile_of("ovirtmgmt").id))
    e.add_vm("old01", lab)
    return e


@pytest.fixture
def url(engine: FakeEngine, tls: TLSFiles) -> Iterator[str]:
    with serve(Handler, tls, engine=engine) as (_server, base_url):
        yield f"{base_url}/ovirt-engine/api"


def connect(url: str, tls: TLSFiles, **overrides) -> OvirtDriver:
    fields = {
        "endpoint": url,
        "username": USER,
        "password": PASSWORD,
        "ca_pem": tls.ca_pem,
        "timeout": 5,
        **overrides,
    }
    return OvirtDriver(Connection(**fields))


@pytest.fixture
def driver(url: str, tls: TLSFiles) -> Iterator[OvirtDriver]:
    d = connect(url, tls)
    yield d
    d.close()


def spec(**overrides) -> VMSpec:
    fields = {
        "name": "node-a1",
        "cpus": 4,
        "memory_mib": 3072,
        "nics": [Nic("ovirtmgmt", MAC0), Nic("lab", MAC1, model="e1000")],
        **overrides,
    }
    return VMSpec(**fields)


def by_name(engine: FakeEngine, name: str):
    return next((v for v in engine.vms.values() if v.name == name), None)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text


# --- health and inventory ----------------------------------------------------------


def test_declares_what_it_implements():
    assert OvirtDriver.name == "ovirt" and OvirtDriver.label == "oVirt/RHV"
    assert OvirtDriver.capabilities == set(Capability)


def test_health_logs_in_reads_the_version_and_logs_out(engine, url, tls):
    d = connect(url.removesuffix("/ovirt-engine/api"), tls)  # the API path is added
    health = d.health()
    assert health.ok and health.version == "4.5.5-1.el8" and health.message == "oVirt Engine"
    assert ("POST", "/ovirt-engine/sso/oauth/token") in engine.requests
    (token,) = engine.tokens
    d.close()
    assert engine.tokens == {} and engine.revoked == [token]
    assert not any(PASSWORD in body for body in engine.bodies)  # only the SSO saw it


def test_inventory(engine, driver):
    inv = driver.inventory()
    assert [(h.name, h.cluster, h.cpus, h.memory_mib, h.state) for h in inv.hosts] == [
        ("host1", "Default", 32, 256 * 1024, "up"),
        ("host2", "Default", 8, 64 * 1024, "up"),
    ]
    assert inv.hosts[0].memory_used_mib == 56 * 1024
    assert inv.clusters == ("Default",)
    assert [(s.name, s.total_bytes, s.free_bytes, s.kind) for s in inv.storage] == [
        ("data1", 1000 * GIB, 700 * GIB, "nfs"),
        ("data2", 60 * GIB, 50 * GIB, "iscsi"),
    ]  # not the ISO domain
    assert inv.networks == ("lab", "ovirtmgmt")  # not the non-VM network
    assert [(t.name, t.cpus, t.memory_mib, t.disk_bytes) for t in inv.templates] == [
        ("rhel9", 2, 4096, 20 * GIB),
        ("rhel9", 2, 4096, 30 * GIB),
    ]
    assert BLANK_ID not in {t.id for t in inv.templates}
    assert {t.os for t in inv.templates} == {"other", "rhel_9x64"}
    db, old = inv.vms
    assert (db.name, db.power, db.host, db.macs, db.cpus, db.memory_mib, db.ha) == (
        "db01",
        base.PowerState.RUNNING,
        "host1",
        (DB_MAC,),
        4,
        8192,
        True,
    )
    assert (old.name, old.power, old.host, old.ha) == ("old01", base.PowerState.STOPPED, "", False)
    assert driver.templates() == inv.templates


def test_get_vm_and_missing_vms(engine, driver):
    db = by_name(engine, "db01")
    vm = driver.get_vm(db.id)
    assert (vm.name, vm.host, vm.macs) == ("db01", "host1", (DB_MAC,))
    for missing in ("5b6c0c8e-0000-4000-8000-000000000000", "../templates"):
        with pytest.raises(base.NotFound):
            driver.get_vm(missing)
    assert not any(".." in path for _m, path in engine.requests)  # refused before sending


# --- create ----------------------------------------------------------------------------


def test_create_blank_vm(engine, driver):
    vm = driver.create_vm(
        spec(disks=[Disk(12 * GIB), Disk(5 * GIB, storage="data2", interface="scsi")])
    )
    made = engine.vms[vm.id]
    assert made.template == BLANK_ID and not made.cloned
    assert (made.cores * made.sockets * made.threads, made.memory) == (4, 3072 * MIB)
    assert made.boot == ["network", "hd"]  # network boot first, then the disk
    assert made.status == "down"  # created, not started
    assert [(n.mac, engine.profiles[n.profile].name, n.interface) for n in made.nics] == [
        (MAC0, "ovirtmgmt", "virtio"),
        (MAC1, "lab", "e1000"),
    ]
    disks = [(engine.disks[a.disk], a) for a in made.attachments]
    assert [(d.size, engine.domains[d.domain].name, a.interface, a.bootable) for d, a in disks] == [
        (12 * GIB, "data1", "virtio", True),  # the emptiest data domain by default
        (5 * GIB, "data2", "virtio_scsi", False),
    ]
    assert all(d.status == "ok" for d, _a in disks)  # the driver waited for them
    domains = {d.name: d for d in engine.domains.values()}
    assert domains["data1"].available == 688 * GIB and domains["data2"].available == 45 * GIB
    assert (vm.name, vm.power, vm.macs, vm.cpus, vm.memory_mib) == (
        "node-a1",
        base.PowerState.STOPPED,
        (MAC0, MAC1),
        4,
        3072,
    )


def test_create_from_template_clones_the_newest_version(engine, driver):
    newest = next(t for t in engine.templates.values() if t.version == 2)
    vm = driver.create_vm(spec(template="rhel9", nics=[Nic("lab", MAC0)], disks=[Disk(GIB)]))
    made = engine.vms[vm.id]
    assert made.template == newest.id and made.cloned  # independent disks
    assert (made.cores, made.memory, made.os_type) == (4, 3072 * MIB, "rhel_9x64")
    assert made.boot == ["network", "hd"]
    # The template's first NIC now has the spec's MAC and network; its second is gone.
    assert [(n.name, n.mac, engine.profiles[n.profile].name) for n in made.nics] == [
        ("nic1", MAC0, "lab")
    ]
    disks = [(engine.disks[a.disk], a.bootable) for a in made.attachments]
    assert [(d.size, boot, d.status) for d, boot in disks] == [
        (30 * GIB, True, "ok"),  # the template's disk, copied
        (GIB, False, "ok"),  # the spec's extra disk is not a second boot disk
    ]
    assert disks[0][0].id not in {a.disk for a in newest.attachments}
    assert made.status == "down"
    assert ("POST", "/ovirt-engine/api/vms?clone=true") in engine.requests
    by_id = driver.create_vm(spec(name="node-a2", template=newest.id, nics=[Nic("lab", MAC1)]))
    assert engine.vms[by_id.id].template == newest.id


def test_create_with_ha_uefi_and_a_preferred_host(engine, driver):
    vm = driver.create_vm(spec(ha=True, firmware="uefi", host="host2", cluster="Default"))
    made = engine.vms[vm.id]
    assert made.ha and vm.ha and made.bios == "q35_ovmf"
    assert [engine.hosts[h].name for h in made.pinned] == ["host2"]
    driver.power(vm.id, PowerAction.ON)
    assert engine.hosts[made.host].name == "host2"


def test_the_cluster_and_storage_domain_options(engine, url, tls):
    engine.add_cluster("Other")
    with connect(url, tls) as d, pytest.raises(base.InvalidRequest, match="Default, Other"):
        d.create_vm(spec())
    d = connect(url, tls, options={"cluster": "Default", "storage_domain": "data2"})
    vm = d.create_vm(spec(disks=[Disk(GIB)]))
    d.close()
    made = engine.vms[vm.id]
    assert engine.clusters[made.cluster].name == "Default"
    assert engine.domains[engine.disks[made.attachments[0].disk].domain].name == "data2"


def test_missing_template_network_storage_or_cluster_is_not_found(engine, driver):
    attempts = [
        spec(template="no-such-template"),
        spec(nics=[Nic("nonet", MAC0)]),
        spec(nics=[Nic("migration", MAC0)]),  # a network without a vNIC profile
        spec(disks=[Disk(GIB, storage="nostore")]),
        spec(cluster="elsewhere"),
        spec(host="host9"),
    ]
    for attempt in attempts:
        with pytest.raises(base.NotFound):
            driver.create_vm(attempt)
    assert not any(
        m == "POST" and p.startswith("/ovirt-engine/api/vms") for m, p in engine.requests
    )
    assert by_name(engine, "node-a1") is None


def test_invalid_specs_are_refused_before_anything_is_made(engine, driver):
    for attempt in (
        spec(nics=[]),
        spec(disks=[Disk(GIB, interface="floppy")]),
        spec(arch="aarch64"),
        spec(name="db01"),
        spec(disks=[Disk(GIB, storage="iso1")]),
    ):
        with pytest.raises(base.InvalidRequest):
            driver.create_vm(attempt)
    assert len(engine.vms) == 2


# --- power, delete, migrate, HA ----------------------------------------------------------


def test_power_cycle(engine, driver):
    vm = driver.create_vm(spec())
    made = engine.vms[vm.id]
    driver.power(vm.id, PowerAction.ON)
    assert made.status == "up" and made.host and made.starts == 1  # waited through powering_up
    assert driver.power_state(vm.id) == base.PowerState.RUNNING
    driver.power(vm.id, PowerAction.ON)  # idempotent: no second start
    assert made.starts == 1
    driver.power(vm.id, PowerAction.REBOOT)
    assert made.resets == 1 and made.status == "up"
    driver.power(vm.id, PowerAction.OFF)
    assert made.status == "down" and not made.host
    assert driver.power_state(vm.id) == base.PowerState.STOPPED
    stops = sum(1 for m, p in engine.requests if m == "POST" and p.endswith("/stop"))
    driver.power(vm.id, PowerAction.OFF)  # idempotent: no second stop
    assert sum(1 for m, p in engine.requests if m == "POST" and p.endswith("/stop")) == stops
    driver.power(vm.id, PowerAction.REBOOT)  # a stopped VM is started
    assert made.starts == 2 and made.status == "up"
    made.status = "paused"
    assert driver.power_state(vm.id) == base.PowerState.PAUSED


def test_delete_stops_the_vm_and_removes_its_disks(engine, driver):
    free = {d.name: d.available for d in engine.domains.values()}
    vm = driver.create_vm(spec(disks=[Disk(8 * GIB)]))
    disk_ids = {a.disk for a in engine.vms[vm.id].attachments}
    driver.power(vm.id, PowerAction.ON)
    driver.delete_vm(vm.id)
    assert vm.id not in engine.vms and not disk_ids & set(engine.disks)
    assert {d.name: d.available for d in engine.domains.values()} == free
    assert any(m == "POST" and p.endswith(f"{vm.id}/stop") for m, p in engine.requests)
    with pytest.raises(base.NotFound):
        driver.delete_vm(vm.id)


def test_live_migration(engine, driver):
    db = by_name(engine, "db01")
    driver.migrate_vm(db.id, "host2")
    assert engine.hosts[db.host].name == "host2" and db.status == "up"
    assert driver.get_vm(db.id).host == "host2"
    posts = len([1 for m, p in engine.requests if p.endswith("/migrate")])
    driver.migrate_vm(db.id, "host2")  # already there
    assert len([1 for m, p in engine.requests if p.endswith("/migrate")]) == posts
    with pytest.raises(base.NotFound):
        driver.migrate_vm(db.id, "host9")
    with pytest.raises(base.InvalidRequest, match="not up"):
        driver.migrate_vm(by_name(engine, "old01").id, "host2")


def test_set_ha(engine, driver):
    old = by_name(engine, "old01")
    driver.set_ha(old.id, True)
    assert old.ha and driver.get_vm(old.id).ha
    driver.set_ha(old.id, False)
    assert not old.ha
    puts = [p for m, p in engine.requests if m == "PUT"]
    driver.set_ha(old.id, False)  # no change, no call
    assert [p for m, p in engine.requests if m == "PUT"] == puts


# --- faults ------------------------------------------------------------------------------


def test_closed_port_is_transient(tls):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    d = connect(f"https://127.0.0.1:{port}/ovirt-engine/api", tls)
    with pytest.raises(base.TransientError, match="unreachable"):
        d.health()
    d.close()


def test_a_silent_endpoint_times_out_within_the_connection_timeout(tls):
    with socket.socket() as sock:  # listens, never answers the TLS handshake
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        started = time.monotonic()
        d = connect(f"https://127.0.0.1:{sock.getsockname()[1]}", tls, timeout=0.5)
        with pytest.raises(base.TransientError):
            d.health()  # the SSO login, which the SDK itself would wait on forever
        d.close()
        assert time.monotonic() - started < 5


def test_bad_credentials(engine, url, tls, caplog):
    caplog.set_level(logging.DEBUG)
    for overrides in ({"password": PASSWORD + "x"}, {"username": "nobody@internal"}):
        d = connect(url, tls, **overrides)
        with pytest.raises(base.AuthenticationFailed, match="access_denied") as caught:
            d.health()
        assert_no_secret(str(caught.value), repr(caught.value), repr(d.connection))
        d.close()
    with pytest.raises(base.AuthenticationFailed, match="username and password"):
        connect(url, tls, password="").health()
    assert engine.tokens == {}
    assert_no_secret(caplog.text)


def test_a_dropped_token_is_renewed_once(engine, driver):
    driver.health()
    engine.tokens.clear()  # the engine restarted, or the session expired
    assert driver.inventory().clusters == ("Default",)
    assert len(engine.tokens) == 1


def test_engine_errors_are_classified(engine, driver):
    engine.refuse("GET", r"/vms$", Fault(503, "Service Unavailable", "Service Unavailable"))
    with pytest.raises(base.TransientError, match="503"):
        driver.inventory()
    old = by_name(engine, "old01")
    engine.refuse(
        "POST", r"/start$", cannot("run VM", "Related operation is currently in progress")
    )
    with pytest.raises(base.TransientError, match="in progress"):
        driver.power(old.id, PowerAction.ON)
    engine.refuse("POST", r"/start$", cannot("run VM", "There is no host that satisfies current"))
    with pytest.raises(base.QuotaExceeded):
        driver.power(old.id, PowerAction.ON)
    assert old.status == "down"


def test_tls_needs_the_right_ca(engine, url, tls, tmp_path):
    other = make_tls(tmp_path / "other")
    for overrides in ({"ca_pem": other.ca_pem}, {"ca_pem": ""}):
        d = connect(url, tls, **overrides)
        with pytest.raises(base.TLSFailed, match="certificate"):
            d.health()
        d.close()
    before = set(Path(tempfile.gettempdir()).glob(CA_GLOB))
    d = connect(url, tls)
    assert d.health().ok
    (ca_file,) = set(Path(tempfile.gettempdir()).glob(CA_GLOB)) - before
    assert ca_file.read_text() == tls.ca_pem  # the private copy libcurl reads
    assert os.stat(ca_file).st_mode & 0o077 == 0
    d.close()
    assert not ca_file.exists()
    d = connect(url, tls, ca_pem="", verify_tls=False)
    assert d.health().ok
    d.close()


def test_a_refused_nic_leaves_nothing_behind(engine, driver):
    disks, free = set(engine.disks), {d.id: d.available for d in engine.domains.values()}
    engine.refuse("POST", r"/nics$", cannot("add Interface", "VM is locked. Try again later"))
    with pytest.raises(base.TransientError, match="add Interface"):
        driver.create_vm(spec(disks=[Disk(GIB)]))
    assert by_name(engine, "node-a1") is None
    assert any(m == "DELETE" for m, _p in engine.requests)  # it was made, then removed
    assert set(engine.disks) == disks
    assert {d.id: d.available for d in engine.domains.values()} == free


def test_a_clone_whose_disk_does_not_fit_leaves_nothing_behind(engine, driver):
    disks = set(engine.disks)
    with pytest.raises(base.QuotaExceeded, match="Low disk space on Storage Domain data2"):
        driver.create_vm(spec(template="rhel9", disks=[Disk(80 * GIB, storage="data2")]))
    assert by_name(engine, "node-a1") is None
    assert set(engine.disks) == disks  # the cloned template disk went with the VM


def test_a_mac_in_use_is_refused_and_leaves_nothing(engine, driver):
    with pytest.raises(base.PermanentError, match=f"MAC Address {DB_MAC} is already in use"):
        driver.create_vm(spec(nics=[Nic("ovirtmgmt", DB_MAC)]))
    assert by_name(engine, "node-a1") is None


def test_a_half_made_vm_that_cannot_be_removed_is_named(engine, driver):
    engine.refuse("POST", r"/diskattachments$", Fault(500, "Internal error", "Internal error"))
    engine.refuse("DELETE", r"/vms/[^/]+$", cannot("remove VM", "VM is being used"))
    with pytest.raises(base.PermanentError) as caught:
        driver.create_vm(spec(disks=[Disk(GIB)]))
    leftover = by_name(engine, "node-a1")
    assert leftover is not None and leftover.id in str(caught.value)
    assert "could not be removed" in str(caught.value)
    assert_no_secret(str(caught.value))


def test_a_status_that_never_settles_is_transient(engine, url, tls):
    old = by_name(engine, "old01")
    engine.delay = 30  # the start never gets to "up" within the timeout
    d = connect(url, tls, timeout=1)
    with pytest.raises(base.TransientError, match="not done after 1 s"):
        d.power(old.id, PowerAction.ON)
    d.close()
    assert old.status == "wait_for_launch"
