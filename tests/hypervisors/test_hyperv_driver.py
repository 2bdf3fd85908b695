"""The Hyper-V driver against the fake WinRM host, through pywinrm unmodified.

The fake (tests/hypervisors/fakes/winrm_api) runs only the reviewed scripts
and records what they did to its in-memory host: the assertions read that
state, not just what the driver returns.
"""

from __future__ import annotations

import base64
import gzip
import logging
import os
import re
import socket
import tempfile

import pytest
import winrm

from hypervisors.drivers import base
from hypervisors.drivers.base import Capability, Connection, Disk, Nic, PowerAction, VMSpec
from hypervisors.drivers.hyperv import (
    LOADER,
    PARAMS_LINE,
    SCRIPT_DIR,
    SCRIPTS,
    HyperVDriver,
    compose,
    script_text,
)
from tests.hypervisors.fakes.common import make_tls
from tests.hypervisors.fakes.winrm_api import GIB, MIB, FakeHyperV, serve_winrm
from tests.hypervisors.fakes.winrm_api.hyperv import Adapter, HardDrive

USER = "pureboot"
PASSWORD = "Hv-S3cret!pass"
TEMPLATES = "D:\\Templates"
MAC0, MAC1 = "00:15:5d:0a:0b:0c", "00:15:5d:0a:0b:0d"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls(tmp_path_factory.mktemp("hyperv-tls"))


@pytest.fixture
def hyperv() -> FakeHyperV:
    host = FakeHyperV("HYPERV01")
    host.drives["D:\\"] = [2048 * GIB, 1536 * GIB]
    host.switches.update({"External": "External", "Lab": "Internal"})
    host.add_file(f"{TEMPLATES}\\ubuntu-24.04.vhdx", 40 * GIB, 9 * GIB)
    host.add_file(f"{TEMPLATES}\\windows-2022.vhdx", 127 * GIB, 14 * GIB)
    host.add_vm("db01", state="Running", cpus=8)
    host.add_vm("old01")
    return host


@pytest.fixture
def endpoint(hyperv, tls, tmp_path):
    with serve_winrm(hyperv, {USER: PASSWORD}, tmp_path / "winrm", tls=tls) as served:
        yield served
        assert served[0].refused == []  # PureBoot sent only reviewed scripts


def driver_for(url: str, ca_pem: str, password: str = PASSWORD, **options) -> HyperVDriver:
    options.setdefault("template_path", TEMPLATES)
    options.setdefault("vhd_path", "D:\\VMs")
    connection = Connection(url, USER, password, ca_pem=ca_pem, timeout=10, options=options)
    return HyperVDriver(connection)


@pytest.fixture
def driver(endpoint, tls) -> HyperVDriver:
    return driver_for(endpoint[1], tls.ca_pem)


def spec(**overrides) -> VMSpec:
    values = {
        "name": "web01",
        "cpus": 4,
        "memory_mib": 4096,
        "nics": [Nic("External", MAC0), Nic("Lab", MAC1)],
        "disks": [Disk(20 * GIB)],
        "template": "ubuntu-24.04",
        "firmware": "uefi",
    }
    values.update(overrides)
    return VMSpec(**values)


def boot_kinds(vm) -> list[str]:
    return [a.mac if isinstance(a, Adapter) else a.path.rsplit("\\", 1)[1] for a in vm.boot_order]


# --- health and inventory ----------------------------------------------------


def test_health_over_ntlm_reads_the_windows_version(driver, endpoint):
    state, _url = endpoint
    health = driver.health()
    assert health == base.Health(
        ok=True,
        version="Microsoft Windows Server 2022 Datacenter 10.0.20348",
        message="Hyper-V host HYPERV01",
    )
    assert state.ran == [("health", {})]
    assert state.refused == []
    assert state.shells == {}  # the shell was deleted after the command


def test_health_over_basic(endpoint, tls):
    state, url = endpoint
    state.schemes = ("basic",)  # a listener with Basic only: NTLM would find no challenge
    assert driver_for(url, tls.ca_pem, transport="basic").health().ok
    with pytest.raises(base.AuthenticationFailed):
        driver_for(url, tls.ca_pem).health()


def test_inventory(driver, hyperv):
    hyperv.free_memory = 100 * GIB
    inventory = driver.inventory()
    assert inventory.hosts == (base.Host("HYPERV01", "", 32, 256 * 1024, 156 * 1024, "up"),)
    assert inventory.clusters == ()
    assert inventory.storage == (
        base.Storage("C:\\", 500 * GIB, 300 * GIB, "volume"),
        base.Storage("D:\\", 2048 * GIB, 1536 * GIB - 23 * GIB, "volume"),
    )
    assert inventory.networks == ("External", "Lab")
    assert [(t.id, t.name, t.disk_bytes) for t in inventory.templates] == [
        ("ubuntu-24.04.vhdx", "ubuntu-24.04", 40 * GIB),
        ("windows-2022.vhdx", "windows-2022", 127 * GIB),
    ]
    vms = {vm.name: vm for vm in inventory.vms}
    assert vms["db01"].power == base.PowerState.RUNNING
    assert vms["db01"].cpus == 8 and vms["db01"].memory_mib == 2048
    assert vms["old01"].power == base.PowerState.STOPPED
    assert vms["old01"].host == "HYPERV01"


def test_inventory_names_the_failover_cluster(driver, hyperv):
    hyperv.cluster = "HVCLUS01"
    inventory = driver.inventory()
    assert inventory.clusters == ("HVCLUS01",)
    assert inventory.hosts[0].cluster == "HVCLUS01"


def test_templates_folder_missing_is_not_found(endpoint, tls):
    with pytest.raises(base.NotFound, match="Cannot find path 'E:\\\\Nothing'"):
        driver_for(endpoint[1], tls.ca_pem, template_path="E:\\Nothing").templates()


def test_no_template_folder_means_no_templates(endpoint, tls):
    state, url = endpoint
    assert driver_for(url, tls.ca_pem, template_path="").templates() == ()
    assert state.ran == []


# --- create ------------------------------------------------------------------


def test_create_from_template_uefi(driver, hyperv):
    vm = driver.create_vm(spec())
    made = hyperv.vms[vm.id]
    assert (made.name, made.generation, made.cpus, made.memory) == ("web01", 2, 4, 4096 * MIB)
    assert made.dynamic_memory is False
    assert made.state == "Off" and made.starts == 0  # created, not started
    assert [(a.switch, a.mac, a.legacy) for a in made.adapters] == [
        ("External", "00155D0A0B0C", False),
        ("Lab", "00155D0A0B0D", False),
    ]  # New-VM's own unconnected adapter is gone
    disk0, disk1 = (hyperv.file(d.path) for d in made.drives)
    assert disk0.path == f"D:\\VMs\\{vm.id}-disk0.vhdx"
    assert (disk0.kind, disk0.parent, disk0.size) == (
        "Differencing",
        f"{TEMPLATES}\\ubuntu-24.04.vhdx",
        40 * GIB,
    )
    assert (disk1.path, disk1.kind, disk1.size) == (
        f"D:\\VMs\\{vm.id}-disk1.vhdx",
        "Dynamic",
        20 * GIB,
    )
    assert {d.controller for d in made.drives} == {"SCSI"}
    # Network first, then the disks.
    assert boot_kinds(made) == [
        "00155D0A0B0C",
        f"{vm.id}-disk0.vhdx",
        f"{vm.id}-disk1.vhdx",
        "00155D0A0B0D",
    ]
    assert made.secure_boot == "Off"
    assert vm == base.VM(vm.id, "web01", base.PowerState.STOPPED, (MAC0, MAC1), 4, 4096, "HYPERV01")


def test_create_copies_the_template_when_asked(endpoint, tls, hyperv):
    driver = driver_for(endpoint[1], tls.ca_pem, template_clone="copy", secure_boot="on")
    vm = driver.create_vm(spec(disks=[]))
    made = hyperv.vms[vm.id]
    disk0 = hyperv.file(made.drives[0].path)
    assert (disk0.kind, disk0.parent, disk0.file_size) == ("Dynamic", "", 9 * GIB)
    assert made.secure_boot == "On"
    assert boot_kinds(made)[:2] == ["00155D0A0B0C", f"{vm.id}-disk0.vhdx"]


def test_create_blank_bios_vm(driver, hyperv):
    hyperv.drives["E:\\"] = [100 * GIB, 90 * GIB]
    vm = driver.create_vm(
        spec(template="", firmware="bios", disks=[Disk(8 * GIB), Disk(2 * GIB, storage="E:\\Fast")])
    )
    made = hyperv.vms[vm.id]
    assert made.generation == 1
    # Only a legacy adapter network-boots a generation 1 VM.
    assert [(a.mac, a.legacy) for a in made.adapters] == [
        ("00155D0A0B0C", True),
        ("00155D0A0B0D", False),
    ]
    assert [(d.controller, d.number, d.location) for d in made.drives] == [
        ("IDE", 0, 0),
        ("IDE", 0, 1),
    ]
    assert [hyperv.file(d.path).size for d in made.drives] == [8 * GIB, 2 * GIB]
    assert made.drives[1].path == f"E:\\Fast\\{vm.id}-disk1.vhdx"
    assert made.startup_order[0] == "LegacyNetworkAdapter"
    assert made.startup_order.index("IDE") == 1


def test_parameters_never_become_script_text(driver, hyperv, endpoint):
    state, _url = endpoint
    name = "x'; Remove-VM * -Force; '$(Stop-Computer)\" `n café"
    vm = driver.create_vm(spec(name=name))
    assert hyperv.vms[vm.id].name == name
    assert vm.name == name  # and back through ConvertTo-Json's escapes and UTF-8
    assert name not in compose("create_vm", {"name": name})
    assert state.ran[-1][1]["name"] == name
    assert state.refused == []


def test_a_large_create_fits_cmd_exe_command_line(driver, hyperv):
    hyperv.switches["A" * 100] = "External"
    nics = [Nic("A" * 100, f"00:15:5d:00:00:{i:02x}") for i in range(8)]
    disks = [Disk(GIB, storage="D:\\" + "v" * 100) for _ in range(12)]
    wanted = spec(name="n" * 100, nics=nics, disks=disks)
    text = compose("create_vm", driver._create_params(wanted))
    command = "powershell -encodedcommand " + base64.b64encode(text.encode("utf-16-le")).decode()
    assert len(command) < 8191
    vm = driver.create_vm(wanted)
    assert len(hyperv.vms[vm.id].drives) == 13


def test_create_refuses_what_hyperv_cannot_make(driver, endpoint):
    state, _url = endpoint
    with pytest.raises(base.InvalidRequest, match="aarch64"):
        driver.create_vm(spec(arch="aarch64"))
    with pytest.raises(base.InvalidRequest, match="MAC"):
        driver.create_vm(spec(nics=[Nic("External", "zz:15:5d:0a:0b:0c")]))
    with pytest.raises(base.InvalidRequest, match="memory"):
        driver.create_vm(spec(memory_mib=1025))
    assert state.ran == []


# --- power and delete --------------------------------------------------------


def test_power_on_off_reboot_and_state(driver, hyperv):
    vm_id = driver.create_vm(spec()).id
    made = hyperv.vms[vm_id]
    driver.power(vm_id, PowerAction.ON)
    driver.power(vm_id, PowerAction.ON)  # already running: nothing to do
    assert (made.state, made.starts) == ("Running", 1)
    assert driver.power_state(vm_id) == base.PowerState.RUNNING
    driver.power(vm_id, PowerAction.REBOOT)
    assert (made.state, made.starts, made.resets) == ("Running", 1, 1)
    driver.power(vm_id, PowerAction.OFF)
    stops = hyperv.calls.count("Stop-VM")
    driver.power(vm_id, PowerAction.OFF)
    assert hyperv.calls.count("Stop-VM") == stops == 1
    assert driver.power_state(vm_id) == base.PowerState.STOPPED
    driver.power(vm_id, PowerAction.REBOOT)  # a reset of a VM that is off starts it
    assert (made.state, made.starts) == ("Running", 2)


def test_power_on_without_host_memory_is_quota(driver, hyperv):
    vm_id = driver.create_vm(spec()).id
    hyperv.free_memory = 1 * GIB
    with pytest.raises(base.QuotaExceeded, match="Not enough memory"):
        driver.power(vm_id, PowerAction.ON)
    assert hyperv.vms[vm_id].state == "Off"


def test_delete_turns_off_and_removes_only_its_disks(driver, hyperv):
    vm = driver.create_vm(spec())
    driver.power(vm.id, PowerAction.ON)
    made = hyperv.vms[vm.id]
    ours = [d.path for d in made.drives]
    foreign = hyperv.add_file("D:\\Data\\shared.vhdx", 10 * GIB)
    made.drives.append(HardDrive("SCSI", 0, 9, foreign.path))
    free_before = hyperv.drives["D:\\"][1]
    hyperv.calls.clear()
    driver.delete_vm(vm.id)
    assert vm.id not in hyperv.vms
    assert all(hyperv.file(path) is None for path in ours)
    assert hyperv.file(foreign.path) is not None
    assert hyperv.file(f"{TEMPLATES}\\ubuntu-24.04.vhdx") is not None
    assert hyperv.drives["D:\\"][1] == free_before + 8 * MIB
    assert hyperv.calls.index("Stop-VM") < hyperv.calls.index("Remove-VM")
    with pytest.raises(base.NotFound):
        driver.delete_vm(vm.id)
    with pytest.raises(base.NotFound):
        driver.get_vm(vm.id)


def test_a_malformed_vm_id_is_not_found_without_asking(driver, endpoint):
    state, _url = endpoint
    for call in (driver.get_vm, driver.power_state, driver.delete_vm):
        with pytest.raises(base.NotFound):
            call("not-a-guid")
    assert state.ran == []


# --- faults ------------------------------------------------------------------


def test_unreachable_endpoint_is_transient(tls):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    driver = driver_for(f"https://127.0.0.1:{port}/wsman", tls.ca_pem)
    with pytest.raises(base.TransientError, match="cannot reach 127.0.0.1"):
        driver.health()


def test_an_endpoint_that_never_answers_is_transient(tls):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts the connection; nobody speaks TLS
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/wsman"
        driver = HyperVDriver(Connection(url, USER, PASSWORD, ca_pem=tls.ca_pem, timeout=1))
        with pytest.raises(base.TransientError):
            driver.health()


def test_an_account_without_hyperv_rights_is_refused(driver, hyperv):
    hyperv.fail(
        "Get-VMHost",
        "You do not have the required permission to complete this task. Contact the "
        "administrator of the authorization policy for the computer 'HYPERV01'.",
        "PermissionDenied",
    )
    with pytest.raises(base.AuthenticationFailed, match="required permission"):
        driver.health()


def test_basic_sign_in_needs_https(endpoint):
    plain = endpoint[1].replace("https:", "http:")
    with pytest.raises(base.InvalidRequest, match="https"):
        HyperVDriver(Connection(plain, USER, PASSWORD, options={"transport": "basic"})).health()
    assert endpoint[0].ran == []


@pytest.mark.parametrize("transport", ["ntlm", "basic"])
def test_bad_credentials(endpoint, tls, transport):
    driver = driver_for(endpoint[1], tls.ca_pem, password="wrong", transport=transport)
    with pytest.raises(base.AuthenticationFailed, match="refused the credentials of 'pureboot'"):
        driver.health()
    assert endpoint[0].ran == []


def test_tls_needs_the_right_ca(endpoint, tls, tmp_path, monkeypatch):
    other = make_tls(tmp_path / "other")
    with pytest.raises(base.TLSFailed, match="did not verify"):
        driver_for(endpoint[1], other.ca_pem).health()
    made = []
    real_mkstemp = tempfile.mkstemp
    monkeypatch.setattr(
        tempfile, "mkstemp", lambda **kw: made.append(real_mkstemp(**kw)) or made[-1]
    )
    assert driver_for(endpoint[1], tls.ca_pem).health().ok
    assert len(made) == 1 and not os.path.exists(made[0][1])  # the CA file is gone
    insecure = Connection(endpoint[1], USER, PASSWORD, verify_tls=False, timeout=10)
    assert HyperVDriver(insecure).health().ok


def test_a_busy_endpoint_is_transient(driver, endpoint):
    endpoint[0].max_shells = 0
    with pytest.raises(base.TransientError, match="maximum number of 0 concurrent shells"):
        driver.health()


def test_create_failing_half_way_leaves_nothing(driver, hyperv):
    hyperv.drives["E:\\"] = [100 * GIB, 1 * MIB]  # the second disk will not fit
    vms, files = set(hyperv.vms), set(hyperv.files)
    free = {root: list(sizes) for root, sizes in hyperv.drives.items()}
    with pytest.raises(base.QuotaExceeded, match="not enough space"):
        driver.create_vm(spec(disks=[Disk(GIB, storage="E:\\VHDs")]))
    assert "New-VM" in hyperv.calls and "Remove-VM" in hyperv.calls  # it was half-way
    assert set(hyperv.vms) == vms and set(hyperv.files) == files
    assert hyperv.drives == free


def test_a_missing_switch_is_not_found_and_leaves_nothing(driver, hyperv):
    vms, files = set(hyperv.vms), set(hyperv.files)
    with pytest.raises(base.NotFound, match='virtual switch with name "Nope"'):
        driver.create_vm(spec(nics=[Nic("Nope", MAC0)]))
    assert set(hyperv.vms) == vms and set(hyperv.files) == files


def test_a_failed_cleanup_names_the_vm_left_behind(driver, hyperv):
    vms = set(hyperv.vms)
    hyperv.fail("Set-VMFirmware", "The operation failed.")
    hyperv.fail("Remove-VM", "The virtual machine is locked.")
    with pytest.raises(base.PermanentError) as caught:
        driver.create_vm(spec())
    (left,) = set(hyperv.vms) - vms
    assert f"VM {left}" in str(caught.value)
    assert "cleaning up failed too" in str(caught.value)


def test_a_missing_template_is_not_found_and_creates_nothing(driver, hyperv):
    with pytest.raises(base.NotFound, match="no template centos.vhdx"):
        driver.create_vm(spec(template="centos"))
    assert "New-VM" not in hyperv.calls
    with pytest.raises(base.NotFound):
        driver.create_vm(spec(template="..\\..\\Windows\\System32\\config"))


def test_secrets_stay_out_of_errors_and_logs(endpoint, tls, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    state, url = endpoint
    messages = []
    for transport in ("ntlm", "basic"):
        with pytest.raises(base.HypervisorError) as caught:
            driver_for(url, tls.ca_pem, password=PASSWORD + "x", transport=transport).health()
        messages.append(caught.value)
    with pytest.raises(base.HypervisorError) as caught:
        driver_for(url, make_tls(tmp_path / "x").ca_pem).health()
    messages.append(caught.value)
    driver = driver_for(url, tls.ca_pem)
    with pytest.raises(base.HypervisorError) as caught:
        driver.create_vm(spec(template="centos"))
    messages.append(caught.value)
    texts = [str(m) for m in messages] + [repr(m) for m in messages] + [repr(driver.connection)]
    texts += [r.getMessage() for r in caplog.records]
    assert messages and not [t for t in texts if PASSWORD in t]
    assert [m.__cause__ for m in messages] == [None] * len(messages)


# --- the scripts and the wire ------------------------------------------------


def test_only_reviewed_scripts_run(endpoint, tls, tmp_path):
    state, url = endpoint
    ca = tmp_path / "ca.pem"
    ca.write_text(tls.ca_pem)
    session = winrm.Session(url, auth=(USER, PASSWORD), transport="basic", ca_trust_path=str(ca))
    assert session.run_ps("Get-VM | Remove-VM -Force").status_code == 1
    # The driver's loader and parameter line around an unreviewed script.
    body = PARAMS_LINE.format(params="e30=") + script_text("health") + "Get-VM | Stop-VM\n"
    payload = base64.b64encode(gzip.compress(body.encode())).decode()
    assert session.run_ps(LOADER.format(payload=payload)).status_code == 1
    assert len(state.refused) == 2 and state.ran == []
    assert b"not PureBoot's script loader" in session.run_ps("Write-Output 1").std_err
    state.refused.clear()


def test_each_script_begins_with_a_header_saying_what_it_returns():
    files = sorted(SCRIPT_DIR.glob("*.ps1"))
    assert sorted(f.stem for f in files) == sorted(SCRIPTS)
    for path in files:
        head = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            head.append(line)
        text = "\n".join(head)
        assert re.match(rf"# {path.stem}: \S", text), path.name
        assert "# Parameters ($p):" in text, path.name
        assert re.search(r"^# Returns: \S", text, re.M), path.name


def test_scripts_parse_as_powershell():
    """tree-sitter's PowerShell grammar stands in for PowerShell's own parser,
    which does not run here: it catches unbalanced braces, quotes and the like."""
    try:
        import tree_sitter
        import tree_sitter_powershell as grammar
    except ImportError as exc:  # a dev dependency: its absence is a failure, never a skip
        pytest.fail(f"{exc.name} is missing: pip install -e '.[dev]'")
    parser = tree_sitter.Parser(tree_sitter.Language(grammar.language()))
    for name in SCRIPTS:
        source = PARAMS_LINE.format(params="e30=") + script_text(name)
        assert not parser.parse(source.encode()).root_node.has_error, name
    loader = compose("create_vm", {"name": "x"})
    assert not parser.parse(loader.encode()).root_node.has_error
    assert parser.parse(b"if ($a { }").root_node.has_error  # the check can fail


def test_errors_are_read_from_raw_clixml_too(driver):
    """Where pywinrm cannot clean stderr (two CLIXML documents), the driver still
    finds the scripts' error line."""
    raw = (
        b'#< CLIXML\r\n<Objs Version="1.1.0.1"><Obj S="progress" RefId="0"/></Objs>'
        b'#< CLIXML\r\n<Objs Version="1.1.0.1"><S S="Error">PUREBOOT|ObjectNotFound|no such '
        b'switch_x000D__x000A_</S><S S="Error">At line:1 char:1_x000D__x000A_</S></Objs>'
    )
    error = driver._failure(raw, 1, "create VM 'x'")
    assert isinstance(error, base.NotFound)
    assert str(error) == "Hyper-V create VM 'x': no such switch"


def test_capabilities_are_what_is_implemented(driver):
    assert Capability.LIVE_MIGRATE not in driver.capabilities
    assert Capability.HA not in driver.capabilities
    with pytest.raises(base.Unsupported):
        driver.migrate_vm("x", "y")
    with pytest.raises(base.InvalidRequest, match="transport"):
        driver_for("https://h/wsman", "", transport="kerberos").health()
