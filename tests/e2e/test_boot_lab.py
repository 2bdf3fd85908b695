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
import re
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from .bootlab import windows, workflows
from .bootlab.lab import ADDRESS, BASE, Lab

pytestmark = pytest.mark.bootlab


@pytest.fixture(scope="module")
def lab():
    workdir = Path(tempfile.mkdtemp(prefix="pureboot-bootlab-"))
    lab = Lab(workdir, PUREBOOT_WINDOWS_SHARE=windows.SHARE)
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


# --- Windows Setup through wimboot ---------------------------------------------------
#
# No Windows can run here. The cells prove everything up to wimboot on real
# iPXE firmware: the script, every file it fetches per firmware, the node's
# own files behind its token. The boot image is a Windows-like ISO with real
# WIMs (tests/e2e/bootlab/windows.py). wimboot is PUREBOOT_WIMBOOT when set,
# else a stand-in: the lab's Debian kernel has wimboot's format (a PE image
# that is a bzImage), so iPXE loads it the same way, and then the kernel gets
# no further (no root file system, no console). What WinPE and the first
# logon would do next is then played by the test through the report API.

WINDOWS_MANAGER = {"bios": "bootmgr", "uefi": "bootx64.efi"}  # each firmware's boot manager
INSTALL_URL = re.compile(r"/api/v1/install/([^/\s]+)/winpeshl\.ini")


@pytest.fixture(scope="module")
def windows_lab(lab):
    """Windows media and wimboot imported, the credentials stored, the workflow saved."""
    started = time.monotonic()
    media = windows.iso(lab.dir / "windows")
    out = lab.manage("import_iso", str(media))
    assert f"imported windows {windows.BUILD} (x86_64) as {windows.IMAGE_NAME}" in out, out
    assert "edition 1: Windows 11 Pro" in out and "edition 2: Windows 11 Home" in out, out
    real = os.environ.get("PUREBOOT_WIMBOOT", "")
    out = lab.manage("import_wimboot", real or str(lab.boot_root / "lab" / "vmlinuz"))
    assert "imported wimboot" in out, out
    # The operator stores the credentials: each one a four-eye request.
    approver = lab.second_admin_token()
    for name, kind, username, password in windows.CREDENTIALS:
        asked = lab.api(
            "POST",
            "/api/v1/credentials",
            {
                "name": name,
                "kind": kind,
                "username": username,
                "password": password,
                # A join account is used only for the domain its scope names.
                "scope": "corp.example.com" if kind == "domain_join" else "",
                "reason": "boot lab: Windows",
            },
        )
        request = asked["approval_request"]
        assert asked["code"] == "approval_required" and request["status"] == "pending", asked
        done = lab.api("POST", f"/api/v1/approvals/{request['id']}/approve", {}, token=approver)
        assert done["status"] == "executed", done
    saved = lab.api("POST", "/api/v1/workflows", {"content": windows.workflow("lab-windows")})
    assert saved["name"] == "lab-windows", saved
    # An edition the install.wim does not hold is refused at save, naming it and the field.
    status, refused = windows.api_status(
        lab,
        "POST",
        "/api/v1/workflows",
        {"content": windows.workflow("lab-windows-ent", edition="Windows 11 Enterprise")},
    )
    assert status == "400", (status, refused)
    message = refused["error"]["message"]
    assert (
        f"'Windows 11 Enterprise' is not an edition in '{windows.IMAGE_NAME}''s install.wim"
        in message
    ), message
    assert "'Windows 11 Pro'; 'Windows 11 Home'" in message, message
    assert refused["error"]["path"].endswith(".edition"), refused
    names = [w["name"] for w in lab.api("GET", "/api/v1/workflows?name=lab-windows-ent")["results"]]
    assert names == []
    took = time.monotonic() - started
    print(f"Windows set-up (ISO, imports, credentials, workflows): {took:.0f} s")
    return {"workflow": "lab-windows", "real_wimboot": bool(real)}


def real_wimboot(lab: Lab, vm, firmware: str) -> None:
    """What a real wimboot shows: it injects the node's files into boot.wim, then finds no
    Windows boot manager in the lab's stand-in files (no Windows Setup can start here)."""
    vm.wait_for("wimboot v", 60)
    if firmware == "bios":
        console = vm.wait_for("Press a key to reboot", 120)
        assert "FATAL: no bootmgr.exe" in console
        # wimboot holds the machine at its prompt: it never returns to iPXE.
        web_before = len(lab.log("web"))
        time.sleep(10)
        assert vm.proc.poll() is None
        assert "/boot/ipxe" not in lab.log("web")[web_before:]
        assert "the install boot failed" not in vm.output()
    else:
        # On UEFI wimboot exits to iPXE, whose script then boots the local disk.
        console = vm.wait_for("the install boot failed; booting the local disk", 120)
        assert "Could not load bootmgfw.efi" in console
    banner = console[console.index("wimboot v") :]
    assert "...found WIM file boot.wim" in banner
    for name in ("winpeshl.ini", "pureboot.cmd", "autounattend.xml"):
        assert f"...patching WIM {name} at" in banner, name  # into X:\Windows\System32


def windows_install(lab: Lab, windows_lab: dict, vm) -> None:
    """One Windows node through iPXE and wimboot on ``vm``'s firmware, then WinPE's and the
    first logon's reports, and the boot after WinPE's (the local disk, never WinPE again)."""
    started = time.monotonic()
    firmware, hostname = vm.firmware, vm.name
    node = pending_node(lab, vm.mac, firmware, hostname, windows_lab["workflow"])
    web_start = len(lab.log("web"))
    vm.power_on()
    vm.wait_for(f"PureBoot: installing {hostname} (Windows Setup through wimboot)", 120)
    # iPXE fetches the files in order; autounattend.xml is the last before `boot`.
    deadline = time.monotonic() + 90
    last = '/autounattend.xml HTTP/1.1" 200'
    while last not in lab.log("web")[web_start:]:
        if time.monotonic() > deadline or vm.proc.poll() is not None:
            vm.kill()
            pytest.fail(f"iPXE never fetched autounattend.xml; console:\n{vm.output()[-3000:]}")
        time.sleep(0.5)
    fetched = time.monotonic() - started
    web = lab.log("web")[web_start:]
    image = f"/boot/files/{windows.IMAGE_NAME}"
    for path in (
        "/boot/files/wimboot/wimboot",
        f"{image}/{WINDOWS_MANAGER[firmware]}",
        f"{image}/BCD",
        f"{image}/boot.sdi",
        f"{image}/boot.wim",
    ):
        assert f'"GET {path} HTTP/1.1" 200' in web, (path, web)
    other = "uefi" if firmware == "bios" else "bios"
    assert f"{image}/{WINDOWS_MANAGER[other]}" not in web  # never the other firmware's
    assert "install.wim" not in web  # Setup reads it over SMB, never iPXE
    for name in ("winpeshl.ini", "pureboot.cmd", "autounattend.xml"):
        assert re.search(rf'"GET /api/v1/install/\S+/{re.escape(name)} HTTP/1\.1" 200', web), name
    console = vm.output()
    # The web log redacts the token; iPXE printed each URL it fetched (wrapped at 80 columns).
    found = INSTALL_URL.search(console.replace("\n", ""))
    assert found, console[-3000:]
    token = unquote(found[1])
    installing = lab.wait_node(vm.mac, state="installing", timeout=10)
    assert installing["id"] == node["id"] and installing["install_attempts"] == 1

    if windows_lab["real_wimboot"]:
        real_wimboot(lab, vm, firmware)
        wimbooted = time.monotonic() - started
    elif firmware == "bios":
        vm.wait_for("Probing EDD", 30)  # the stand-in kernel's setup code: iPXE booted it
    # With the stand-in kernel nothing gets further (no root file system, no
    # console); with a real wimboot nothing can (no Windows boot manager).
    vm.kill()
    assert lab.log("web")[web_start:].count("/boot/files/wimboot/wimboot") == 1

    # WinPE: pureboot.cmd reports, Setup writes the disk.
    windows.report(lab, token, "installing", 10, "WinPE started")
    windows.report(lab, token, "disk_written", 60, "Setup wrote the disk")
    # Setup restarts: the next boot is the local disk, never WinPE again.
    web_start = len(lab.log("web"))
    vm.power_on()
    console = vm.wait_for("continues from the local disk", 120)
    disk = time.monotonic() - started
    assert f"PureBoot: {hostname} is installing; booting the local disk" in console
    vm.kill()
    web = lab.log("web")[web_start:]
    assert "/boot/ipxe" in web and "/boot/files/" not in web and "/api/v1/install/" not in web
    assert lab.node(vm.mac)["install_attempts"] == 1
    # The first logon: installed, then active.
    windows.report(lab, token, "installed", 100, "first logon")
    lab.wait_node(vm.mac, state="installed", timeout=10)
    windows.report(lab, token, "active", 100, "first logon done")
    done = lab.wait_node(vm.mac, state="active", timeout=10)
    assert done["install_attempts"] == 1
    runs = lab.api("GET", f"/api/v1/nodes/{node['id']}/runs")["results"]
    assert len(runs) == 1 and runs[0]["status"] == "succeeded", runs
    wimboot = "the stand-in kernel"
    if windows_lab["real_wimboot"]:
        wimboot = f"a real wimboot, which stopped at {wimbooted:.0f} s"
    print(
        f"Windows {firmware} ({wimboot}): iPXE fetched everything in {fetched:.0f} s; "
        f"the local disk at {disk:.0f} s; the whole cell {time.monotonic() - started:.0f} s"
    )


def test_9_windows_wimboot_bios(lab, windows_lab):
    """SeaBIOS with the iPXE ROM: wimboot, bootmgr (never the EFI boot manager), BCD,
    boot.sdi, boot.wim and the node's own files; after disk_written, the local disk."""
    vm = lab.vm("win-bios", "52:54:00:b0:00:09", "bios")
    try:
        windows_install(lab, windows_lab, vm)
    finally:
        vm.kill()


def test_10_windows_wimboot_uefi(lab, windows_lab):
    """OVMF's PXE, snponly.efi: the same with the EFI boot manager (never bootmgr)."""
    vm = lab.vm("win-uefi", "52:54:00:e0:00:10", "uefi")
    try:
        windows_install(lab, windows_lab, vm)
    finally:
        vm.kill()
