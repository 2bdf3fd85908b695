"""The VMware vSphere driver against govmomi's vCenter simulator.

These tests do NOT talk to a live vCenter: none runs on these machines. They
run the driver, through pyVmomi unmodified, against govmomi's own simulator
of the vSphere Web Services API (``vcsim``), compiled once per session from
the govmomi sources Debian ships (tests/hypervisors/vcsim). Without Go or
those sources the tests fail, naming the Debian package to install; they
never skip.

The simulator runs govmomi's VPX model over TLS signed by a throw-away CA:
datacenter DC0, cluster DC0_C0 with hosts DC0_C0_H0..2, standalone host
DC0_H0, datastore LocalDS_0, the network "VM Network", the distributed port
group DC0_DVPG0, and the template debian-12-template. Assertions read the
simulator's state with pyVmomi directly (``admin``), not the driver's answers.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
import uuid
from pathlib import Path

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from hypervisors.drivers import base
from hypervisors.drivers.base import Capability, Disk, Nic, PowerAction, PowerState, VMSpec
from hypervisors.drivers.vmware import VMwareDriver
from tests.hypervisors.fakes.common import make_tls
from tests.hypervisors.vcsim import build as vcsim_build

USERNAME = "pureboot-svc@vsphere.local"
PASSWORD = "vc-Secret-7f3a9c"
TEMPLATE = "debian-12-template"
GiB = 2**30
ROOT = Path(__file__).resolve().parents[2]


# --- the simulator ---------------------------------------------------------------


@pytest.fixture(scope="session")
def vcsim_binary(tmp_path_factory):
    var = Path(os.environ.get("PUREBOOT_VAR_DIR") or ROOT / "var")
    try:
        return vcsim_build.build(tmp_path_factory.mktemp("vcsim-bin"), var / "cache" / "go-build")
    except vcsim_build.VcsimUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def tls(tmp_path_factory):
    return make_tls(tmp_path_factory.mktemp("vcsim-tls"))


@pytest.fixture(scope="session")
def vcsim(vcsim_binary, tls, tmp_path_factory):
    try:
        server = vcsim_build.start(
            vcsim_binary, tls, USERNAME, PASSWORD, tmp_path_factory.mktemp("vcsim-run")
        )
    except vcsim_build.VcsimUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def admin(vcsim, tls):
    """pyVmomi's own session, to read what the simulator recorded."""
    si = SmartConnect(
        host="127.0.0.1",
        port=vcsim.port,
        user=USERNAME,
        pwd=PASSWORD,
        sslContext=ssl.create_default_context(cadata=tls.ca_pem),
    )
    yield si.RetrieveContent()
    Disconnect(si)


def _all(content, kind):
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        return list(view.view)
    finally:
        view.Destroy()


def _find_vm(content, name):
    return next((vm for vm in _all(content, vim.VirtualMachine) if vm.name == name), None)


@pytest.fixture
def connect(vcsim, tls):
    def make(**changes) -> base.Connection:
        fields = {
            "endpoint": vcsim.url,
            "username": USERNAME,
            "password": PASSWORD,
            "ca_pem": tls.ca_pem,
            "timeout": 10.0,
        }
        fields.update(changes)
        return base.Connection(**fields)

    return make


@pytest.fixture
def driver(connect):
    with VMwareDriver(connect()) as opened:
        yield opened


@pytest.fixture
def cleanup(admin):
    """Names of VMs a test made; whatever is left of them is destroyed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        vm = _find_vm(admin, name)
        if vm is None:
            continue
        if vm.runtime.powerState != "poweredOff":
            vm.PowerOffVM_Task()
        vm.Destroy_Task()


def _name(cleanup, prefix="pb"):
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cleanup.append(name)
    return name


def _mac() -> str:
    # vCenter takes manual MACs in 00:50:56:00:00:00-00:50:56:3f:ff:ff.
    tail = uuid.uuid4().bytes
    return f"00:50:56:{tail[0] & 0x3F:02x}:{tail[1]:02x}:{tail[2]:02x}"


def _nics(vm):
    return [
        d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)
    ]


def _disks(vm):
    return [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]


def _assert_network_boots_first(vm, mac):
    order = vm.config.bootOptions.bootOrder
    nic = next(d for d in _nics(vm) if d.macAddress == mac)
    assert isinstance(order[0], vim.vm.BootOptions.BootableEthernetDevice)
    assert order[0].deviceKey == nic.key
    assert isinstance(order[1], vim.vm.BootOptions.BootableDiskDevice)
    assert order[1].deviceKey == min(d.key for d in _disks(vm))


# --- build ------------------------------------------------------------------------


def test_a_missing_go_or_debian_source_names_its_package(tmp_path):
    assert vcsim_build.missing_packages() == []
    assert vcsim_build.missing_packages(gopath=tmp_path, path=str(tmp_path)) == [
        "golang-go",
        "golang-github-vmware-govmomi-dev",
        "golang-github-google-uuid-dev",
    ]


def test_capabilities_are_what_the_driver_implements():
    assert VMwareDriver.capabilities == {
        Capability.HEALTH,
        Capability.INVENTORY,
        Capability.CREATE_VM,
        Capability.CLONE_TEMPLATE,
        Capability.POWER,
        Capability.DELETE_VM,
        Capability.TEMPLATE_SYNC,
        Capability.LIVE_MIGRATE,
    }
    with pytest.raises(base.Unsupported):
        VMwareDriver(base.Connection("vc.example")).set_ha("vm-1", True)


# --- health and inventory ---------------------------------------------------------


def test_health_logs_in_and_reads_the_version(driver, admin):
    health = driver.health()
    assert health.ok
    assert admin.about.fullName in health.version
    assert "6.5" in health.version


def test_the_endpoint_may_be_a_host_and_port(connect, vcsim):
    with VMwareDriver(connect(endpoint=f"127.0.0.1:{vcsim.port}")) as driver:
        assert driver.health().ok


def test_inventory_lists_hosts_clusters_storage_networks_templates_and_vms(driver, admin):
    inventory = driver.inventory()

    hosts = {h.name: h for h in inventory.hosts}
    assert set(hosts) == {"DC0_H0", "DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2"}
    assert hosts["DC0_C0_H1"].cluster == "DC0_C0" and hosts["DC0_H0"].cluster == ""
    real = next(h for h in _all(admin, vim.HostSystem) if h.name == "DC0_C0_H1")
    assert hosts["DC0_C0_H1"].cpus == real.summary.hardware.numCpuThreads > 0
    assert hosts["DC0_C0_H1"].memory_mib == real.summary.hardware.memorySize // 2**20 > 0
    assert hosts["DC0_C0_H1"].state == "connected"
    assert inventory.clusters == ("DC0_C0",)

    (storage,) = inventory.storage
    datastore = _all(admin, vim.Datastore)[0]
    assert storage.name == "LocalDS_0"
    assert storage.total_bytes == datastore.summary.capacity > 0
    assert storage.free_bytes == datastore.summary.freeSpace > 0

    assert {"VM Network", "DC0_DVPG0"} <= set(inventory.networks)
    assert [t.name for t in inventory.templates] == [TEMPLATE]

    vms = {vm.name: vm for vm in inventory.vms}
    assert TEMPLATE not in vms
    for real_vm in _all(admin, vim.VirtualMachine):
        if real_vm.config.template or real_vm.name not in vms:
            continue
        listed = vms[real_vm.name]
        assert listed.id == real_vm._moId
        assert listed.power == {"poweredOn": PowerState.RUNNING}.get(
            real_vm.runtime.powerState, PowerState.STOPPED
        )
        assert listed.macs == tuple(n.macAddress for n in _nics(real_vm))
        assert listed.host == real_vm.runtime.host.name
    assert vms["DC0_H0_VM0"].power == PowerState.RUNNING


def test_templates_are_the_vms_marked_as_templates(driver, admin):
    real = _find_vm(admin, TEMPLATE)
    (template,) = driver.templates()
    assert template.id == real._moId and template.name == TEMPLATE
    assert template.cpus == real.config.hardware.numCPU
    assert template.memory_mib == real.config.hardware.memoryMB
    assert template.disk_bytes == sum(d.capacityInKB * 1024 for d in _disks(real)) > 0


# --- create -------------------------------------------------------------------------


def test_create_blank_vm_with_disks_nics_and_network_boot_first(driver, admin, cleanup, vcsim):
    name, mac0, mac1 = _name(cleanup), _mac(), _mac()
    spec = VMSpec(
        name=name,
        cpus=2,
        memory_mib=1536,
        nics=[Nic("VM Network", mac0.upper(), "vmxnet3"), Nic("DC0_DVPG0", mac1, "e1000")],
        disks=[Disk(2 * GiB), Disk(1 * GiB, storage="LocalDS_0")],
        host="DC0_C0_H2",
    )
    made = driver.create_vm(spec)

    vm = _find_vm(admin, name)
    assert made.id == vm._moId and made.macs == (mac0, mac1)
    assert vm.runtime.host.name == made.host == "DC0_C0_H2"
    assert vm.runtime.powerState == "poweredOff"
    assert vm.config.hardware.numCPU == 2 and vm.config.hardware.memoryMB == 1536
    assert [d.capacityInKB * 1024 for d in _disks(vm)] == [2 * GiB, 1 * GiB]
    first, second = _nics(vm)
    assert isinstance(first, vim.vm.device.VirtualVmxnet3)
    assert isinstance(second, vim.vm.device.VirtualE1000)
    assert (first.macAddress, second.macAddress) == (mac0, mac1)
    assert first.addressType.lower() == "manual" == second.addressType.lower()
    assert first.backing.deviceName == "VM Network"
    portgroup = next(n for n in _all(admin, vim.Network) if n.name == "DC0_DVPG0")
    assert second.backing.port.portgroupKey == portgroup.key
    _assert_network_boots_first(vm, mac0)
    assert (vcsim.datastore_dir / name).is_dir()


def test_clone_from_template_sets_our_mac_and_boot_order(driver, admin, cleanup):
    template = _find_vm(admin, TEMPLATE)
    template_disks = [d.capacityInKB for d in _disks(template)]
    name, mac = _name(cleanup), _mac()
    spec = VMSpec(
        name=name,
        cpus=3,
        memory_mib=2048,
        nics=[Nic("VM Network", mac)],
        disks=[Disk(1 * GiB)],
        template=template._moId,  # by id; by name in the tests below
    )
    made = driver.create_vm(spec)

    vm = _find_vm(admin, name)
    assert made.id == vm._moId != template._moId
    assert vm.runtime.powerState == "poweredOff" and not vm.config.template
    assert vm.config.hardware.numCPU == 3 and vm.config.hardware.memoryMB == 2048
    (nic,) = _nics(vm)
    assert nic.macAddress == mac and nic.addressType.lower() == "manual"
    assert [d.capacityInKB for d in _disks(vm)] == [*template_disks, 1024 * 1024]
    _assert_network_boots_first(vm, mac)
    assert _find_vm(admin, TEMPLATE).config.template  # the template stays a template


def test_clone_of_a_missing_template_is_not_found_and_makes_nothing(driver, admin, cleanup):
    name = _name(cleanup)
    spec = VMSpec(name, 1, 512, nics=[Nic("VM Network", _mac())], template="no-such-template")
    with pytest.raises(base.NotFound, match="no-such-template"):
        driver.create_vm(spec)
    assert _find_vm(admin, name) is None


def test_a_missing_network_is_not_found_and_makes_nothing(driver, admin, cleanup):
    name = _name(cleanup)
    with pytest.raises(base.NotFound, match="no-such-net"):
        driver.create_vm(VMSpec(name, 1, 512, nics=[Nic("no-such-net", _mac())]))
    assert _find_vm(admin, name) is None


def test_the_folder_option_places_the_vm(connect, admin, cleanup):
    datacenter = _all(admin, vim.Datacenter)[0]
    existing = {f.name: f for f in datacenter.vmFolder.childEntity if isinstance(f, vim.Folder)}
    parent = existing.get("pureboot") or datacenter.vmFolder.CreateFolder("pureboot")
    if not any(f.name == "lab" for f in parent.childEntity):
        parent.CreateFolder("lab")
    name = _name(cleanup)
    spec = VMSpec(name, 1, 256, nics=[Nic("VM Network", _mac())], disks=[Disk(GiB)])
    options = {"datacenter": "DC0", "cluster": "DC0_C0", "datastore": "LocalDS_0"}
    with VMwareDriver(connect(options={**options, "folder": "pureboot/lab"})) as driver:
        driver.create_vm(spec)
    vm = _find_vm(admin, name)
    assert vm.parent.name == "lab" and vm.parent.parent.name == "pureboot"
    assert vm.runtime.host.parent.name == "DC0_C0"
    with VMwareDriver(connect(options={"folder": "pureboot/nowhere"})) as driver:
        with pytest.raises(base.NotFound, match="nowhere"):
            driver.create_vm(VMSpec(_name(cleanup), 1, 256, nics=[Nic("VM Network", _mac())]))


# --- failures half-way ----------------------------------------------------------------


def test_a_clone_failing_half_way_is_removed(driver, admin, cleanup, vcsim):
    name = _name(cleanup)
    spec = VMSpec(name, 2, 1024, nics=[Nic("VM Network", _mac())], template=TEMPLATE)
    # The clone succeeds; configuring it then fails as on a host out of memory.
    vcsim.fail_next("ReconfigVM_Task", "InsufficientResourcesFault")
    with pytest.raises(base.QuotaExceeded, match="InsufficientResourcesFault"):
        driver.create_vm(spec)
    assert _find_vm(admin, name) is None
    assert not (vcsim.datastore_dir / name).exists()


def test_a_blank_create_failing_half_way_is_removed(driver, admin, cleanup, vcsim):
    name = _name(cleanup)
    spec = VMSpec(name, 1, 512, nics=[Nic("VM Network", _mac())], disks=[Disk(GiB)])
    vcsim.fail_next("ReconfigVM_Task", "HostCommunication")
    with pytest.raises(base.TransientError, match="HostCommunication"):
        driver.create_vm(spec)
    assert _find_vm(admin, name) is None
    assert not (vcsim.datastore_dir / name).exists()


def test_a_half_made_vm_that_cannot_be_removed_is_named(driver, admin, cleanup, vcsim):
    name = _name(cleanup)
    spec = VMSpec(name, 1, 512, nics=[Nic("VM Network", _mac())], template=TEMPLATE)
    vcsim.fail_next("ReconfigVM_Task", "InsufficientResourcesFault")
    vcsim.fail_next("Destroy_Task", "HostCommunication")
    with pytest.raises(base.PermanentError, match="left behind") as caught:
        driver.create_vm(spec)
    leftover = _find_vm(admin, name)  # the cleanup fixture removes it
    assert leftover is not None and f"half-made VM {leftover._moId} " in str(caught.value)


def test_a_failing_power_task_raises_and_changes_nothing(driver, admin, cleanup, vcsim):
    name = _name(cleanup)
    made = driver.create_vm(VMSpec(name, 1, 256, nics=[Nic("VM Network", _mac())]))
    vcsim.fail_next("PowerOnVM_Task", "HostCommunication")
    with pytest.raises(base.TransientError, match=f"power on VM {made.id}"):
        driver.power(made.id, PowerAction.ON)
    assert _find_vm(admin, name).runtime.powerState == "poweredOff"


# --- power, delete, migrate --------------------------------------------------------------


def test_power_on_off_and_reset(driver, admin, cleanup):
    name = _name(cleanup)
    made = driver.create_vm(VMSpec(name, 1, 256, nics=[Nic("VM Network", _mac())]))
    vm = _find_vm(admin, name)
    assert driver.power_state(made.id) == PowerState.STOPPED

    driver.power(made.id, PowerAction.ON)
    assert vm.runtime.powerState == "poweredOn"
    booted = vm.summary.runtime.bootTime
    driver.power(made.id, PowerAction.ON)  # already on: nothing happens
    assert vm.summary.runtime.bootTime == booted
    assert driver.power_state(made.id) == PowerState.RUNNING

    driver.power(made.id, PowerAction.REBOOT)
    assert vm.runtime.powerState == "poweredOn"
    assert vm.summary.runtime.bootTime > booted  # reset: powered off and on again

    driver.power(made.id, PowerAction.OFF)
    assert vm.runtime.powerState == "poweredOff"
    driver.power(made.id, PowerAction.OFF)  # already off: no InvalidPowerState
    assert driver.power_state(made.id) == PowerState.STOPPED

    driver.power(made.id, PowerAction.REBOOT)  # a stopped VM is started
    assert vm.runtime.powerState == "poweredOn"


def test_delete_powers_off_and_removes_the_vm_and_its_disks(driver, admin, cleanup, vcsim):
    name = _name(cleanup)
    spec = VMSpec(name, 1, 256, nics=[Nic("VM Network", _mac())], disks=[Disk(GiB)])
    made = driver.create_vm(spec)
    driver.power(made.id, PowerAction.ON)
    assert list((vcsim.datastore_dir / name).glob("*.vmdk"))

    driver.delete_vm(made.id)
    assert _find_vm(admin, name) is None
    assert not (vcsim.datastore_dir / name).exists()
    with pytest.raises(base.NotFound):
        driver.get_vm(made.id)
    with pytest.raises(base.NotFound):
        driver.delete_vm(made.id)


def test_live_migration_moves_a_running_vm_to_another_host(driver, admin, cleanup):
    name = _name(cleanup)
    made = driver.create_vm(VMSpec(name, 1, 256, nics=[Nic("VM Network", _mac())]))
    driver.power(made.id, PowerAction.ON)
    source = driver.get_vm(made.id).host
    target = next(h for h in ("DC0_C0_H0", "DC0_C0_H1") if h != source)

    driver.migrate_vm(made.id, target)
    vm = _find_vm(admin, name)
    assert vm.runtime.host.name == target and vm.runtime.powerState == "poweredOn"
    assert driver.get_vm(made.id).host == target
    with pytest.raises(base.NotFound, match="no-such-host"):
        driver.migrate_vm(made.id, "no-such-host")


def test_an_unknown_vm_is_not_found(driver):
    with pytest.raises(base.NotFound):
        driver.get_vm("vm-999999")
    with pytest.raises(base.NotFound):
        driver.power_state("vm-999999")


# --- connection faults -------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_closed_port_is_transient(connect):
    with VMwareDriver(connect(endpoint=f"https://127.0.0.1:{_closed_port()}/sdk")) as driver:
        with pytest.raises(base.TransientError):
            driver.health()


def test_a_server_that_never_answers_times_out(connect):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections queue up; nobody ever answers them
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/sdk"
        started = time.monotonic()
        with VMwareDriver(connect(endpoint=url, timeout=1.0)) as driver:
            with pytest.raises(base.TransientError, match="no answer .* within 1 s"):
                driver.health()
        assert time.monotonic() - started < 5


def test_a_bad_password_is_an_authentication_failure(connect):
    with VMwareDriver(connect(password="wrong-" + PASSWORD)) as driver:
        with pytest.raises(base.AuthenticationFailed, match="InvalidLogin"):
            driver.health()
    with VMwareDriver(connect(username="someone-else")) as driver:
        with pytest.raises(base.AuthenticationFailed):
            driver.inventory()


def test_an_untrusted_certificate_fails_tls_and_the_right_ca_works(connect, tmp_path):
    other_ca = make_tls(tmp_path / "other").ca_pem
    with VMwareDriver(connect(ca_pem=other_ca)) as driver:
        with pytest.raises(base.TLSFailed):
            driver.health()
    with VMwareDriver(connect(ca_pem=other_ca, verify_tls=False)) as driver:
        assert driver.health().ok
    with VMwareDriver(connect()) as driver:
        assert driver.health().ok
    with VMwareDriver(connect(ca_pem="-----BEGIN CERTIFICATE-----\nnot one\n")) as driver:
        with pytest.raises(base.TLSFailed, match="ca_pem"):
            driver.health()


def test_no_error_or_log_line_shows_the_password(connect, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    attempts = [
        connect(password="wrong-" + PASSWORD),
        connect(endpoint=f"127.0.0.1:{_closed_port()}"),
        connect(ca_pem=make_tls(tmp_path / "other").ca_pem),
    ]
    texts = []
    for connection in attempts:
        texts.append(repr(connection))
        with VMwareDriver(connection) as driver, pytest.raises(base.HypervisorError) as caught:
            driver.health()
        texts += [str(caught.value), repr(caught.value)]
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
    texts.append(caplog.text)
    for text in texts:
        assert PASSWORD not in text
