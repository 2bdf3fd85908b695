"""The ARM lab: ARM64 UEFI machines, installers that fetch their media, NFS roots.

Same lab as tests/e2e/test_boot_lab.py (a private network namespace, PureBoot's
dnsmasq, TFTP daemon and web app); the machines differ:

1. ARM64 UEFI (AAVMF) network boot of an unknown machine: DHCP client arch 11
   gets ``grubnetaa64.efi`` over TFTP, that GRUB asks for
   ``grub-arm64/grub.cfg-01-<mac>`` and the machine is discovered as aarch64;
   after its wait menu, PureBoot's GRUB chainloads the disk's own loader.
2. An installed ARM64 machine, network first in its boot order: PureBoot lets
   it go (no DHCP answer), AAVMF boots its disk's ``\\EFI\\BOOT\\BOOTAA64.EFI``.
3. An x86 Ubuntu-style live netboot: ``manage.py import_iso`` of a small
   live-server ISO, the installer's initrd fetches the whole ISO by the
   ``url=`` PureBoot puts on its command line.
4. An ARM64 machine with its root over NFS (nfs-ganesha in the lab): the
   template read-only, the node's own export read-write.
5. ARM64 UEFI HTTP Boot (AAVMF, PXE off) of an unknown machine: DHCP client
   arch 19 gets ``<base>/boot/http/grubnetaa64.efi``; GRUB then fetches its
   modules and config from ``/grub-arm64/`` over HTTP and the machine is
   discovered as aarch64, as in cell 1.

Run with ``make lab`` (CI's lab leg). Needs root and the Debian packages named
in tests/e2e/bootlab/arm64.py and artifacts.py; it fails naming them, never skips.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from bootserve import ganesha, nfsroot

from .bootlab import arm64, liveiso, nfs
from .bootlab.arm64 import ArmVM
from .bootlab.lab import ADDRESS, BASE, ROOT, Lab

pytestmark = pytest.mark.bootlab

ARTIFACTS = ROOT / "test-artifacts" / "bootlab"
PREFIX = "arm__"  # test_boot_lab.py keeps its files in the same folder


@pytest.fixture(scope="module")
def lab():
    arm64.require()
    workdir = Path(tempfile.mkdtemp(prefix="pureboot-armlab-"))
    lab = Lab(workdir)
    lab.timings = {}
    try:
        lab.up()
        lab.manage("import_bootloaders", "--arm64", timeout=900)
        yield lab
    finally:
        lab.down()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for old in ARTIFACTS.glob(f"{PREFIX}*"):
            old.unlink()
        patterns = ("logs/*.log", "vms/*/console-*.log", "vms/*/qemu-*.log", "*.conf")
        for pattern in patterns:
            for path in workdir.glob(pattern):
                name = str(path.relative_to(workdir)).replace("/", "__")
                shutil.copyfile(path, ARTIFACTS / f"{PREFIX}{name}")
        if lab.timings:
            lines = [f"{name}: {seconds:.0f} s" for name, seconds in lab.timings.items()]
            (ARTIFACTS / f"{PREFIX}timings.txt").write_text("\n".join(lines) + "\n")
        shutil.rmtree(workdir, ignore_errors=True)


MARKER = "PBLAB-ARM: booted from the local disk"


def dashed(mac: str) -> str:
    return mac.replace(":", "-")


def test_1_arm64_uefi_pxe_unknown_machine_is_discovered_as_aarch64(lab):
    # A disk with an OS: after the wait menu, PureBoot's GRUB hands over to it.
    disk = arm64.esp_disk(lab.dir / "arm-pxe-esp.img", f"echo '{MARKER}'\nsleep 1\nhalt\n")
    vm = ArmVM(lab, "arm-pxe", "52:54:00:aa:00:01", disk=disk)
    started = time.monotonic()
    vm.power_on()
    node = lab.wait_node(vm.mac, timeout=240, state="discovered")
    lab.timings["1 arm64 uefi pxe: power-on to discovered"] = time.monotonic() - started
    vm.wait_for("is discovered; waiting for an assignment", 60)
    # The wait menu's local entry chainloads the disk's loader (GRUB 2.06's
    # exit would leave AAVMF in its setup screen instead).
    console = vm.wait_for(MARKER, 120)
    lab.timings["1 arm64 uefi pxe: discovered to its disk"] = time.monotonic() - started
    vm.kill()
    assert "UiApp" not in console.split("is discovered")[-1], console[-3000:]
    assert "NBP filename is grubnetaa64.efi" in console
    assert node["arch"] == "aarch64" and node["firmware"] == "uefi", node
    tftp = lab.log("tftp")
    assert "grubnetaa64.efi" in tftp, tftp[-3000:]
    assert f"grub-arm64/grub.cfg-01-{dashed(vm.mac)}" in tftp, tftp[-3000:]
    assert "efiarm64" in lab.dhcp_log()  # client architecture 11 matched


def test_2_arm64_installed_machine_boots_its_disk(lab):
    disk = arm64.esp_disk(lab.dir / "arm-esp.img", f"echo '{MARKER}'\nsleep 1\nhalt\n")
    vm = ArmVM(lab, "arm-installed", "52:54:00:aa:00:02", disk=disk)
    node = lab.api(
        "POST",
        "/api/v1/nodes",
        {
            "hostname": "arm-installed",
            "arch": "aarch64",
            "firmware": "uefi",
            "interfaces": [{"mac": vm.mac, "primary": True}],
        },
    )
    # Forced into `installed` as tests/factories.make_node does (set-up only),
    # then its dnsmasq host entry rewritten from the database.
    lab.manage(
        "shell",
        "-c",
        "from nodes.models import Node; "
        f"Node.objects.filter(pk={node['id']}).update(state='installed')",
    )
    lab.manage("dhcp_sync")
    started = time.monotonic()
    # Slow, as real UEFI firmware with the network first is: AAVMF waits about
    # 60 s on each of PXEv4, HTTPv4 and HTTPv6 (PXEv6 is switched off).
    console = vm.boot(400)
    lab.timings["2 arm64 uefi installed: power-on to its disk"] = time.monotonic() - started
    assert MARKER in console, console[-3000:]
    # PureBoot let it go (Rule E): no DHCP answer, so no GRUB of PureBoot's ran;
    # AAVMF gave up on each network entry in turn, then booted the disk.
    assert f"{vm.mac} ignored" in lab.dhcp_log()
    assert "PXE-E18: Server response timeout" in console
    assert "Welcome to GRUB!" in console  # the disk's own standalone GRUB
    assert dashed(vm.mac) not in lab.log("tftp")
    assert lab.node(vm.mac)["state"] == "installed"


LIVE_WORKFLOW = f"""\
name: lab-ubuntu-live
description: "ARM lab - an Ubuntu live-server netboot; its initrd fetches the ISO by URL"
arch: [x86_64]
firmware: [bios, uefi]
tasks:
  - type: pxe_boot
    boot_image: {liveiso.IMAGE_NAME}
    cmdline: console=ttyS0 panic=-1
  - type: ubuntu_autoinstall
    username: lab
"""


def test_3_x86_ubuntu_live_netboot_fetches_its_iso_by_url(lab):
    iso = liveiso.build(lab.dir / "ubuntu-live.iso")
    imported = lab.manage("import_iso", str(iso))
    found = re.search(rf"^\s*iso\s+/boot/files/{liveiso.IMAGE_NAME}/(\S+)", imported, re.M)
    assert found, imported
    path = f"/boot/files/{liveiso.IMAGE_NAME}/{found[1]}"
    lab.api("POST", "/api/v1/workflows", {"content": LIVE_WORKFLOW})
    vm = lab.vm("live-x86", "52:54:00:aa:00:03", "bios")
    node = lab.api(
        "POST",
        "/api/v1/nodes",
        {
            "hostname": "live-x86",
            "arch": "x86_64",
            "firmware": "bios",
            "interfaces": [{"mac": vm.mac, "primary": True}],
        },
    )
    lab.change_state(node["id"], "pending", workflow="lab-ubuntu-live")
    started = time.monotonic()
    console = vm.boot(240)
    lab.timings["3 x86 bios live netboot: power-on to ISO fetched"] = time.monotonic() - started
    assert f"PBLIVE: casper: url={BASE}{path}" in console, console[-3000:]
    cmdline = next(line for line in console.splitlines() if "Command line:" in line)
    assert " ip=dhcp " in cmdline and " autoinstall " in cmdline, cmdline
    digest = hashlib.sha256(iso.read_bytes()).hexdigest()
    assert f"PBLIVE: fetched {iso.stat().st_size} bytes sha256 {digest}" in console, console[-3000:]
    assert f'"GET {path} HTTP/1.1" 200' in lab.log("web")
    assert lab.node(vm.mac)["state"] == "installing"


NFS_TEMPLATE = {
    "etc/hostname": "template\n",
    "etc/pureboot-template": "lab template 1\n",
    "usr/bin/hello": "#!/bin/sh\necho hello\n",
    "var/lib/state": "template state\n",
    "home/lab/.profile": "PS1='$ '\n",
}
OVERLAY = ["/etc", "/var", "/home"]


def test_4_arm64_diskless_node_boots_its_nfs_root(lab):
    nfs.require()
    template = lab.dir / "nfsroot" / "templates" / "lab-tpl"
    for rel, text in NFS_TEMPLATE.items():
        (template / rel).parent.mkdir(parents=True, exist_ok=True)
        (template / rel).write_text(text)
    mac = "52:54:00:aa:00:04"
    node = lab.api(
        "POST",
        "/api/v1/nodes",
        {
            "hostname": "arm-nfs",
            "arch": "aarch64",
            "firmware": "uefi",
            "interfaces": [{"mac": mac, "primary": True}],
        },
    )
    # The node's overlay as bootserve.nfsroot seeds it: whole copies of the
    # template's overlay folders.
    overlay = lab.dir / "nfsroot" / "nodes" / str(node["id"])
    for folder in OVERLAY:
        shutil.copytree(template / folder.lstrip("/"), overlay / folder.lstrip("/"), symlinks=True)
    # The node's export is read-write to its leased address only (as
    # nfsroot.exports() says): ask dnsmasq for that lease with the node's MAC.
    lease = lab.dhcp(mac)
    assert lease is not None, lab.dhcp_log()[-2000:]
    exports = [
        ganesha.template_export(1, "lab-tpl", template, ("10.99.0.0/24",)),
        ganesha.node_export(node["id"], overlay, (lease["ip"],)),
    ]
    nfs.start_ganesha(lab, exports)
    args = nfsroot.kernel_args(
        server=ADDRESS,
        template_export=f"{ganesha.TEMPLATE_PSEUDO}lab-tpl",
        node_export=f"{ganesha.NODE_PSEUDO}{node['id']}",
        overlay_paths=OVERLAY,
    )
    vmlinuz, _ = arm64.kernel()
    initrd = nfs.initramfs(lab.dir / "nfs-initrd.img")
    cmdline = "console=ttyAMA0 panic=-1 " + " ".join(args)
    vm = ArmVM(lab, "arm-nfs", mac, kernel=(vmlinuz, initrd, cmdline))
    started = time.monotonic()
    console = vm.boot(300)
    lab.timings["4 arm64 nfs root: power-on to checks done"] = time.monotonic() - started
    assert "PBNFS: diskless checks done" in console, console[-3000:]
    assert f"PBNFS: network up: {lease['ip']}/" in console
    assert "PBNFS: template says: lab template 1" in console
    assert "PBNFS: template is read-only" in console and "Read-only file system" in console
    for folder in OVERLAY:
        assert f"PBNFS: overlay {folder} is writable" in console, console[-3000:]
        written = overlay / folder.lstrip("/") / "written-by-guest"
        assert written.read_text() == f"written by the guest in {folder}\n"
        assert not (template / folder.lstrip("/") / "written-by-guest").exists()
    assert not (template / "usr" / "written-by-guest").exists()
    assert "panic" not in console.replace("panic=-1", "")


def dhcp_lines(lab: Lab, mac: str) -> list[str]:
    """dnsmasq's log lines of every DHCP transaction ``mac`` took part in."""
    log = lab.dhcp_log().splitlines()
    xids = {m[1] for line in log if mac in line and (m := re.search(r"\]: (\d+) ", line))}
    return [line for line in log if (m := re.search(r"\]: (\d+) ", line)) and m[1] in xids]


# GRUB's prompts when it has nothing (more) to read: nothing else will happen.
GRUB_GAVE_UP = re.compile(r"^grub( rescue)?> ", re.M)


def test_5_arm64_uefi_http_boot(lab):
    """AAVMF's HTTP Boot (PXE switched off): client arch 19 gets grubnetaa64.efi by URL,
    and the unknown machine is discovered as aarch64, as over PXE (cell 1).

    Started by HTTP Boot, Debian's GRUB 2.06 takes the controller over HTTP,
    ``(http,10.99.0.1:8080)``, as its root with the image's prefix
    ``/grub-arm64``, not TFTP: so the image has GRUB's ``http`` module built
    in, and PureBoot answers ``GET /grub-arm64/...`` (modules, then the
    per-machine config) as it answers them over TFTP. Without either, GRUB
    stops at ``grub rescue>`` having asked nothing.
    """
    vm = ArmVM(lab, "arm-http", "52:54:00:aa:00:05", pxe=False)
    tftp_before, web_before = len(lab.log("tftp")), len(lab.log("web"))
    started = time.monotonic()
    vm.power_on()
    # HTTP Boot IPv4 is AAVMF's first network entry (PXE is off): GRUB runs
    # about 10 s after power-on. Stop early once GRUB is at a prompt.
    node = lab.node(vm.mac)
    deadline = started + 120
    while not (node and node["state"] == "discovered") and time.monotonic() < deadline:
        if vm.proc.poll() is not None or GRUB_GAVE_UP.search(vm.output()):
            break
        time.sleep(1)
        node = lab.node(vm.mac)
    seconds = time.monotonic() - started
    vm.kill()
    console = vm.output()
    web = lab.log("web")[web_before:]
    tftp = lab.log("tftp")[tftp_before:]
    outcome = "discovered" if node and node["state"] == "discovered" else "not discovered"
    lab.timings[f"5 arm64 uefi http boot: power-on to {outcome}"] = seconds

    # The firmware took HTTP Boot over IPv4, PureBoot's DHCP matched arch 19 ...
    assert "Start HTTP Boot over IPv4" in console, console[-3000:]
    assert "PXE over IPv4" not in console
    dhcp = "\n".join(dhcp_lines(lab, vm.mac))
    assert "vendor class: HTTPClient:Arch:00019" in dhcp, dhcp[-3000:]
    assert re.search(r"tags: .*\befiarm64http\b", dhcp), dhcp[-3000:]
    assert f"bootfile-name  {BASE}/boot/http/grubnetaa64.efi" in dhcp, dhcp[-3000:]
    # ... and the controller handed out GRUB (OVMF and AAVMF ask its size first).
    assert '"HEAD /boot/http/grubnetaa64.efi HTTP/1.1" 200' in web, web[-3000:]
    assert '"GET /boot/http/grubnetaa64.efi HTTP/1.1" 200' in web, web[-3000:]
    assert "Welcome to GRUB!" in console, console[-3000:]

    # What GRUB did next, for the failure message: its console, and every
    # request it made of the controller (the test's own API polls left out).
    requests = [
        line
        for line in web.splitlines()
        if re.search(r'"[A-Z]+ /', line) and not re.search(r'"[A-Z]+ /(api/v1|boot/http)/', line)
    ]
    seen = (
        f"power-on to {outcome}: {seconds:.0f} s\n"
        f"GRUB's console:\n{console.split('Welcome to GRUB!')[-1].strip()[-2000:]}\n"
        f"web requests after the image:\n{chr(10).join(requests) or '(none)'}\n"
        f"TFTP log during the boot:\n{tftp.strip()[-2000:] or '(none)'}"
    )
    assert outcome == "discovered", seen
    assert node["arch"] == "aarch64" and node["firmware"] == "uefi", node
    # Its modules and its per-machine config came from PureBoot over HTTP: over
    # HTTP GRUB reads grub.cfg, which asks again as grub.cfg-<mac-with-colons>.
    config = f"grub-arm64/grub.cfg-{vm.mac}"
    assert f'GET /{config} HTTP/1.1" 200' in web, seen
    assert re.search(r'"GET /grub-arm64/arm64-efi/\S+\.mod HTTP/1.1" 200', web), seen
    assert "grub-arm64/" not in tftp, seen
    assert not GRUB_GAVE_UP.search(console), seen
