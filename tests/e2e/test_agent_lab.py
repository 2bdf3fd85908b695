"""The agent lab: real machines (QEMU, SeaBIOS + iPXE) wiped by the PureBoot agent.

Each machine has three disks of three kinds, pre-filled with a known
pattern: virtio, NVMe (QEMU's NVMe controller) and SATA (AHCI). The test
only does what an operator does: asks for the deprovision, has a second
admin approve it, powers the machine on. Then it checks from outside the
guest, by reading the disk files, that no byte of the pattern is left, and
that every certificate verifies (and a tampered one does not).

What this lab cannot prove: QEMU offers no ATA security feature set, no NVMe
Sanitize and no SCSI SANITIZE, so on these disks the agent uses NVMe Format
and overwriting; the Purge commands of real drives (and their firmware's
honesty) are only exercised on real hardware (README: "Secure wipe").

Run with ``make lab`` (CI's lab leg); it builds the agent from Debian
packages first (``manage.py build_agent``, cached in PUREBOOT_LAB_CACHE).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .bootlab import artifacts
from .bootlab.lab import BASE, ROOT, VM, Lab

pytestmark = pytest.mark.bootlab

PATTERN = b"PUREBOOT-LAB-DATA-0123456789abcdef"
ARTIFACTS = ROOT / "test-artifacts" / "agent"


class AgentVM(VM):
    """A lab machine with a virtio, an NVMe and a SATA disk, each full of PATTERN."""

    SIZES = {"virtio": 48, "nvme": 32, "sata": 24}  # MiB

    def __init__(self, lab: Lab, name: str, mac: str) -> None:
        super().__init__(lab, name, mac, "bios", disk="blank", system_uuid=None)
        self.disks = {"virtio": self.disk}
        self.disks["nvme"] = self.dir / "nvme.img"
        self.disks["sata"] = self.dir / "sata.img"
        for kind, path in self.disks.items():
            size = self.SIZES[kind] * 1024 * 1024
            data = (PATTERN * (size // len(PATTERN) + 1))[:size]
            path.write_bytes(data)

    def command(self) -> list[str]:
        cmd = super().command()
        cmd = [
            "virtio-blk-pci,drive=d0,bootindex=2,serial=PBVIRTIO01"
            if c.startswith("virtio-blk")
            else c
            for c in cmd
        ]
        cmd[cmd.index("-m") + 1] = "768"
        return cmd + [
            "-drive",
            f"file={self.disks['nvme']},if=none,id=pbnvme,format=raw",
            "-device",
            "nvme,serial=PBNVME01,drive=pbnvme",
            "-device",
            "ahci,id=ahci0",
            "-drive",
            f"file={self.disks['sata']},if=none,id=pbsata,format=raw",
            "-device",
            "ide-hd,drive=pbsata,bus=ahci0.0,serial=PBSATA01",
        ]

    def pattern_left(self) -> dict[str, int]:
        """Per disk, how many bytes are not zero (read from outside the guest)."""
        left = {}
        for kind, path in self.disks.items():
            data = path.read_bytes()
            assert len(data) == self.SIZES[kind] * 1024 * 1024
            left[kind] = len(data) - data.count(0)
        return left


TGT_CONTROL_PORT = "77"  # tgtd's admin socket, /run/tgtd/socket.77: the lab's own


@pytest.fixture(scope="module")
def lab():
    workdir = Path(tempfile.mkdtemp(prefix="pureboot-agentlab-"))
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tgtd, tgtadm = shutil.which("tgtd"), shutil.which("tgtadm")
    assert tgtd and tgtadm, "tgtd is missing: apt-get install tgt (the migration's iSCSI target)"
    lab = Lab(workdir, PUREBOOT_ISCSI_TGTADM=f"{tgtadm} -C {TGT_CONTROL_PORT}")
    try:
        lab.up()
        # The controller's iSCSI target daemon, inside the lab's network namespace.
        lab.spawn("tgtd", [tgtd, "-f", "-C", TGT_CONTROL_PORT])
        started = time.monotonic()
        out = lab.manage(
            "build_agent", "--cache", str(artifacts.cache_dir() / "agent"), timeout=1800
        )
        lab.build_seconds = time.monotonic() - started
        lab.build_output = out
        lab.approver = lab.second_admin_token()
        yield lab
    finally:
        tgt = lab.procs.pop("tgtd", None)
        if tgt is not None:
            tgt.kill()  # tgtd stops only on SIGKILL
            tgt.wait()
        lab.down()
        for pattern in ("logs/*.log", "vms/*/console-*.log", "vms/*/qemu-*.log"):
            for path in workdir.glob(pattern):
                target = ARTIFACTS / str(path.relative_to(workdir)).replace("/", "__")
                shutil.copyfile(path, target)
        shutil.rmtree(workdir, ignore_errors=True)


def deprovision(lab: Lab, vm: AgentVM, **body) -> dict:
    node = lab.api("POST", "/api/v1/nodes", {"hostname": vm.name, "interfaces": [{"mac": vm.mac}]})
    asked = lab.api("POST", "/api/v1/deprovision", {"node": node["id"], "reason": "lab", **body})
    request = asked["approval_request"]
    assert request["status"] == "pending"
    assert lab.node(vm.mac)["state"] == "discovered"  # nothing before the second person
    lab.api("POST", f"/api/v1/approvals/{request['id']}/approve", {}, token=lab.approver)
    return lab.wait_node(vm.mac, state="deprovisioning", timeout=10)


def verify(lab: Lab, exported: dict, path: Path) -> subprocess.CompletedProcess:
    path.write_text(json.dumps(exported))
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "verify_certificate", str(path)],
        env=lab.env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_1_deprovision_wipes_virtio_nvme_and_sata_and_certifies_each(lab):
    vm = AgentVM(lab, "wipe1", "52:54:00:a6:00:01")
    assert all(left > 0 for left in vm.pattern_left().values())
    node = deprovision(lab, vm)

    started = time.monotonic()
    vm.power_on()
    vm.wait_for("PureBoot agent: ready", 180)
    ready = time.monotonic() - started
    console = vm.wait_off(600)
    assert "PureBoot agent: done" in console, console[-3000:]
    node = lab.wait_node(vm.mac, state="retired", timeout=10)

    # From outside the guest: not one byte of the old data on any disk.
    assert vm.pattern_left() == {"virtio": 0, "nvme": 0, "sata": 0}
    inventory = lab.api("GET", f"/api/v1/nodes/{node['id']}")["inventory"]
    kinds = {d["serial"]: d["transport"] for d in inventory["disks"]}
    assert kinds == {"PBVIRTIO01": "virtio", "PBNVME01": "nvme", "PBSATA01": "sata"}
    certs = lab.api("GET", f"/api/v1/wipe-certificates?node={node['id']}")["results"]
    assert sorted((c["disk_serial"], c["method"]) for c in certs) == [
        ("PBNVME01", "nvme-format"),
        ("PBSATA01", "overwrite"),
        ("PBVIRTIO01", "overwrite"),
    ]
    for cert in certs:
        exported = lab.api("GET", f"/api/v1/wipe-certificates/{cert['uuid']}/export")
        done = verify(lab, exported, lab.dir / f"{cert['uuid']}.json")
        assert done.returncode == 0, done.stderr
        assert "valid" in done.stdout and "audit event" in done.stdout
    tampered = dict(exported)
    tampered["document"] = exported["document"].replace('"passes":1', '"passes":7')
    assert tampered["document"] != exported["document"]
    done = verify(lab, tampered, lab.dir / "tampered.json")
    assert done.returncode != 0 and "signature does not match" in done.stderr

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    initrd = Path(lab.boot_root / "pureboot-agent-x86_64" / "initrd.img")
    kernel = Path(lab.boot_root / "pureboot-agent-x86_64" / "vmlinuz")
    (ARTIFACTS / "measurements.json").write_text(
        json.dumps(
            {
                "power_on_to_agent_ready_seconds": round(ready, 1),
                "initrd_bytes": initrd.stat().st_size,
                "kernel_bytes": kernel.stat().st_size,
                "build_seconds": round(lab.build_seconds, 1),
                "accelerator": "TCG (no KVM)",
            },
            indent=1,
        )
    )


def test_3_the_agent_build_is_reproducible(lab):
    """A second build from the same packages gives the same bytes as the imported one."""
    out = lab.dir / "rebuild"
    lab.manage(
        "build_agent",
        "--cache",
        str(artifacts.cache_dir() / "agent"),
        "--no-import",
        "--output",
        str(out),
        timeout=900,
    )
    imported = lab.boot_root / "pureboot-agent-x86_64"
    for name in ("vmlinuz", "initrd.img"):
        assert (out / name).read_bytes() == (imported / name).read_bytes(), name


def test_2_power_cut_and_lost_controller_mid_wipe_never_end_in_done(lab):
    vm = AgentVM(lab, "wipe2", "52:54:00:a6:00:02")
    node = deprovision(lab, vm)

    # A power cut in the middle of the first disk's wipe.
    vm.power_on()
    vm.wait_for("step 1: wipe started", 240)
    vm.kill()
    assert lab.node(vm.mac)["state"] == "deprovisioning"
    jobs = lab.api("GET", f"/api/v1/agent-jobs?node={node['id']}")["results"]
    assert jobs[0]["status"] == "running" and "step 2 of 4: wipe" in jobs[0]["where"]

    # Power back: the agent asks, is told to run that step again.
    vm.power_on()
    vm.wait_for("resuming step 1 after an interruption", 240)
    # Now the controller goes away while the agent works.
    vm.wait_for("step 2: wipe started", 240)
    lab.stop_controller()
    try:
        vm.wait_for("controller unavailable", 240)
    finally:
        lab.start_controller()
    console = vm.wait_off(600)
    assert "PureBoot agent: done" in console
    node = lab.wait_node(vm.mac, state="retired", timeout=10)
    assert vm.pattern_left() == {"virtio": 0, "nvme": 0, "sata": 0}
    jobs = lab.api("GET", f"/api/v1/agent-jobs?node={node['id']}")["results"]
    assert jobs[0]["status"] == "succeeded"
    assert jobs[0]["steps"][1]["attempts"] == 2  # the interrupted step ran again
    certs = lab.api("GET", f"/api/v1/wipe-certificates?node={node['id']}")["results"]
    assert len(certs) == 3


class DeployVM(VM):
    """A lab machine with one blank virtio disk, larger than the image it gets."""

    DISK_MB = 80
    FIRMWARE = "bios"

    def __init__(self, lab: Lab, name: str, mac: str) -> None:
        super().__init__(lab, name, mac, self.FIRMWARE, disk="blank", system_uuid=None)
        with self.disk.open("r+b") as f:
            f.truncate(self.DISK_MB * 1024 * 1024)

    def command(self) -> list[str]:
        cmd = super().command()
        cmd[cmd.index("-m") + 1] = "768"
        return cmd


DEPLOY_WORKFLOW = """name: lab-deploy
description: The lab's OS image, written by the PureBoot agent
arch: [x86_64]
firmware: [bios]
tasks:
  - type: image_deploy
    image: lab-os
    target: smallest
    network: keep
"""


def upload_and_save(lab: Lab, path: Path, name: str, fmt: str, workflow: str) -> None:
    """Upload an image template as an operator would (curl, multipart) and save its workflow."""
    uploaded = lab.curl(
        "-X", "POST", "-H", f"Authorization: Bearer {lab.token}",
        "-F", f"name={name}", "-F", f"format={fmt}", "-F", "arch=x86_64",
        "-F", f"file=@{path}", "-w", "\n%{http_code}",
        f"{BASE}/api/v1/templates",
    )  # fmt: skip
    assert uploaded.endswith("201"), uploaded
    lab.api("POST", "/api/v1/workflows", {"content": workflow})


def test_4_image_deploy_writes_checks_and_boots_the_image(lab):
    image = lab.os_image.read_bytes()
    upload_and_save(lab, lab.os_image, "lab-os", "raw", DEPLOY_WORKFLOW)
    vm = DeployVM(lab, "deploy1", "52:54:00:a6:00:04")

    vm.power_on()
    vm.wait_for("waiting for an assignment", 120)
    node = lab.wait_node(vm.mac, state="discovered")
    lab.api("PATCH", f"/api/v1/nodes/{node['id']}", {"hostname": "deploy1"})
    lab.change_state(node["id"], "pending", workflow="lab-deploy")
    # The controller goes away just as the deploy step starts: the agent waits for it
    # (the stream is written again from its start, a result is sent again); only the
    # result the controller takes marks the node installed.
    vm.wait_for("deploy started", 300)
    lab.stop_controller()
    time.sleep(8)
    lab.start_controller()
    vm.wait_for("rebooting into the deployed system", 400)
    console = vm.wait_off(60)
    assert "SHA-256 matches" in console and "first-boot data written" in console
    assert "streaming the image failed" in console or "controller unavailable" in console, console[
        -3000:
    ]
    lab.wait_node(vm.mac, state="installed", timeout=10)
    # From outside the guest: the image byte for byte, except the MBR's second
    # partition entry, which now points at the first-boot partition after it.
    disk = vm.disk.read_bytes()
    second = disk[446 + 16 : 446 + 32]
    assert disk[:462] == image[:462] and disk[478 : len(image)] == image[478:]
    assert image[462:478] == bytes(16)
    assert second[4] == 0x0C and int.from_bytes(second[8:12], "little") * 512 >= len(image)

    # Power on again: PureBoot's DHCP ignores an installed machine, the firmware
    # boots the disk, and the deployed system's first boot reports `active`.
    console = vm.boot(240)
    assert "PBLAB: booted from the local disk" in console
    assert "PBLAB: first-boot data found: deploy1" in console
    assert "PBLAB: reported active" in console
    node = lab.wait_node(vm.mac, state="active", timeout=10)
    runs = lab.api("GET", f"/api/v1/nodes/{node['id']}/runs")["results"]
    assert runs[0]["status"] == "succeeded"
    lab.deployed = vm  # test 6 moves this machine's system to new hardware


def test_5_the_arm64_agent_boots_and_reaches_the_controller(lab):
    """The aarch64 build (Debian's arm64 packages) boots on QEMU's virt machine, loads its
    drivers, gets a lease from PureBoot's DHCP and speaks to the controller with curl."""
    qemu = shutil.which("qemu-system-aarch64")
    assert qemu, "qemu-system-aarch64 is missing: apt-get install qemu-system-arm"
    foreign = subprocess.run(
        ["dpkg", "--print-foreign-architectures"], capture_output=True, text=True
    ).stdout.split()
    if "arm64" not in foreign:  # the lab runs as root; build_agent says the same to people
        subprocess.run(["dpkg", "--add-architecture", "arm64"], check=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=900)
    out = lab.dir / "agent-arm64"
    lab.manage(
        "build_agent", "--arch", "aarch64", "--no-import", "--output", str(out),
        "--cache", str(artifacts.cache_dir() / "agent"), timeout=1800,
    )  # fmt: skip
    # PureBoot's DHCP answers only machines it provisions: register this one.
    lab.api(
        "POST",
        "/api/v1/nodes",
        {"hostname": "arm01", "arch": "aarch64", "firmware": "uefi",
         "interfaces": [{"mac": "52:54:00:a6:00:05"}]},
    )  # fmt: skip
    console = lab.dir / "arm64-console.log"
    tap = lab.tap()
    proc = subprocess.run(
        lab.in_ns(
            qemu, "-M", "virt", "-cpu", "cortex-a57", "-m", "768", "-display", "none",
            "-monitor", "none", "-no-reboot", "-serial", f"file:{console}",
            "-kernel", str(out / "vmlinuz"), "-initrd", str(out / "initrd.img"),
            "-append", f"console=ttyAMA0 pureboot.url={BASE} pureboot.token=not-a-token",
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:a6:00:05",
        ),
        capture_output=True,
        timeout=600,
    )  # fmt: skip
    text = console.read_text(errors="replace")
    shutil.copyfile(console, ARTIFACTS / "arm64-console.log")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "PureBoot agent: ready" in text, text[-3000:]
    # A forged token: the controller answered, the agent refused to act and powered off.
    assert "the controller refused this agent's token" in text
    assert "aarch64" in (out / "manifest.json").read_text()


class MigrationTargetVM(DeployVM):
    """The new machine: one blank virtio disk, larger than the old machine's."""

    DISK_MB = 96


def test_6_migration_moves_the_disk_and_the_identity_then_wipes_the_old_machine(lab):
    old = getattr(lab, "deployed", None)
    assert old is not None, "test 6 migrates the machine test 4 deployed: run the whole module"
    node = lab.node(old.mac)
    assert node["state"] == "active" and node["hostname"] == "deploy1"
    old_disk = old.disk.read_bytes()
    new = MigrationTargetVM(lab, "newbox", "52:54:00:a6:00:06")
    lab.api("POST", "/api/v1/nodes", {"interfaces": [{"mac": new.mac}]})
    target = lab.node(new.mac)

    asked = lab.api(
        "POST", "/api/v1/migrate", {"source": node["id"], "target": target["id"], "reason": "lab"}
    )
    request = asked["approval_request"]
    assert lab.node(old.mac)["state"] == "active"  # nothing before the second person
    lab.api("POST", f"/api/v1/approvals/{request['id']}/approve", {}, token=lab.approver)
    lab.wait_node(old.mac, state="migrating", timeout=10)
    lab.wait_node(new.mac, state="migrating", timeout=10)

    # The new machine boots first: its agent reports its hardware and waits.
    new.power_on()
    new.wait_for("waiting for the source machine's copy", 240)
    # The old machine copies its disk to the controller's LUN and powers off.
    console = old.boot(400)
    assert "logging in to iqn." in console and "copying " in console, console[-3000:]
    assert "step 1: copy_out succeeded" in console, console[-3000:]
    # The new machine restores it, checks it and reboots (QEMU: -no-reboot, it stops).
    console = new.wait_off(400)
    assert "restoring " in console and "step 1: restore succeeded" in console, console[-3000:]
    assert "rebooting" in console

    # From outside: the new disk holds the old disk byte for byte; the old disk is untouched.
    assert new.disk.read_bytes()[: len(old_disk)] == old_disk
    assert old.disk.read_bytes() == old_disk
    moved = lab.node(new.mac)
    assert moved["id"] == node["id"] and moved["hostname"] == "deploy1"
    assert moved["state"] == "active"
    handed_back = lab.node(old.mac)
    assert handed_back["id"] == target["id"] and handed_back["state"] == "discovered"
    migration = lab.api("GET", f"/api/v1/migrations?source={node['id']}")["results"][0]
    assert migration["status"] == "succeeded"
    assert migration["transfer"]["sha256"] == migration["transfer"]["target_sha256"]
    iqn = migration["transfer"]["iqn"]
    shown = subprocess.run(
        ["tgtadm", "-C", TGT_CONTROL_PORT, "--lld", "iscsi", "--op", "show", "--mode", "target"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert iqn not in shown  # the LUN is gone

    # The new machine boots the moved system from its disk (PureBoot ignores an active node).
    console = new.boot(240)
    assert "PBLAB: booted from the local disk" in console

    # The old machine's wipe was asked for on its own; a second person approves it.
    wipe = migration["transfer"]["deprovision_request"]
    assert wipe and lab.api("GET", f"/api/v1/approvals/{wipe}")["status"] == "pending"
    lab.api("POST", f"/api/v1/approvals/{wipe}/approve", {}, token=lab.approver)
    lab.wait_node(old.mac, state="deprovisioning", timeout=10)
    old.boot(400)
    lab.wait_node(old.mac, state="retired", timeout=30)
    data = old.disk.read_bytes()
    assert data.count(0) == len(data), "the old machine's disk still holds data"


class FilesVM(DeployVM):
    """A UEFI machine (OVMF) with one blank virtio disk for a file-level image."""

    DISK_MB = 160
    FIRMWARE = "uefi"


FILES_WORKFLOW = """name: lab-files
description: A root file system unpacked by the PureBoot agent onto the layout below
arch: [x86_64]
firmware: [uefi]
tasks:
  - type: partition
    table: gpt
    partitions:
      - {role: esp, size: 64M}
      - {role: swap, size: 8M}
      - {role: root, size: rest}
  - type: image_deploy
    image: lab-root
"""


def lab_root_archive(path: Path) -> dict[str, bytes]:
    """A small root file system as tar.gz; returns the files it holds."""
    import io
    import tarfile

    files = {
        "etc/os-release": b"ID=pureboot-lab\n",
        "etc/hostname": b"template\n",
        "boot/efi/EFI/BOOT/BOOTX64.EFI": b"MZ" + bytes(range(256)) * 64,
        "usr/bin/hello": b"#!/bin/sh\necho hello\n",
        "srv/data/big.bin": bytes(range(256)) * 4096,
    }
    with tarfile.open(path, "w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o755 if "bin/" in name else 0o644
            archive.addfile(info, io.BytesIO(content))
        link = tarfile.TarInfo("usr/bin/hello-again")
        link.type, link.linkname = tarfile.LNKTYPE, "usr/bin/hello"
        archive.addfile(link)
    return files


def _debugfs_cat(image: Path, path: str) -> bytes:
    done = subprocess.run(
        ["debugfs", "-R", f"cat {path}", str(image)], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_7_a_file_level_image_goes_onto_the_partitions_the_workflow_lays_out(lab):
    archive = lab.dir / "lab-root.tar.gz"
    files = lab_root_archive(archive)
    upload_and_save(lab, archive, "lab-root", "tar.gz", FILES_WORKFLOW)
    vm = FilesVM(lab, "files1", "52:54:00:a6:00:07")

    vm.power_on()
    vm.wait_for("waiting for an assignment", 180)
    node = lab.wait_node(vm.mac, state="discovered")
    lab.api("PATCH", f"/api/v1/nodes/{node['id']}", {"hostname": "files1"})
    lab.change_state(node["id"], "pending", workflow="lab-files")
    vm.wait_for("rebooting into the deployed system", 400)
    console = vm.wait_off(60)
    assert "files read back and match the image's manifest" in console, console[-3000:]
    lab.wait_node(vm.mac, state="installed", timeout=10)

    # From outside the guest: the table the workflow asked for...
    disk = vm.disk
    table = json.loads(
        subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, check=True).stdout
    )["partitiontable"]
    assert table["label"] == "gpt"
    parts = table["partitions"]
    assert [p["type"] for p in parts] == [
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",  # EFI system partition
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",  # Linux swap
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",  # Linux root (x86-64)
    ]
    assert parts[0]["size"] * 512 == 64 * 2**20 and parts[1]["size"] * 512 == 8 * 2**20
    data = disk.read_bytes()
    esp, root = lab.dir / "esp.img", lab.dir / "root.img"
    for part, out in ((parts[0], esp), (parts[2], root)):
        out.write_bytes(data[part["start"] * 512 : (part["start"] + part["size"]) * 512])
    # ...the ESP holds the image's boot/efi files, the root file system the rest...
    loader = subprocess.run(
        ["mtype", "-i", str(esp), "::/EFI/BOOT/BOOTX64.EFI"], capture_output=True, check=True
    ).stdout
    assert loader == files["boot/efi/EFI/BOOT/BOOTX64.EFI"]
    for name in ("etc/os-release", "usr/bin/hello", "usr/bin/hello-again", "srv/data/big.bin"):
        want = files["usr/bin/hello" if name.endswith("again") else name]
        assert _debugfs_cat(root, f"/{name}") == want, name
    # ...and the first boot's data: mounts by UUID, the NoCloud seed naming the node.
    fstab = _debugfs_cat(root, "/etc/fstab").decode()
    assert "\t/\text4\t" in fstab and "\t/boot/efi\tvfat\t" in fstab and "\tswap\t" in fstab
    seed = _debugfs_cat(root, "/var/lib/cloud/seed/nocloud/meta-data").decode()
    assert "local-hostname: files1" in seed
