"""Windows Setup's network boot: wimboot with the image's boot files and the node's own files.

iPXE loads wimboot, then the boot manager this firmware runs (``bootmgr`` on
BIOS, the EFI boot manager on UEFI), the BCD, ``boot.sdi`` and ``boot.wim``,
and the node's ``winpeshl.ini``, ``pureboot.cmd`` and ``autounattend.xml``,
which wimboot injects into WinPE. Once WinPE reports that Setup wrote the
disk, the node boots its disk while Setup finishes: never WinPE again.
"""

from __future__ import annotations

import pytest

from bootserve import grub, ipxe, pxelinux
from bootserve.engine import WIMBOOT, Client, Decision, Kind, NodeFacts, Policy, Step, decide
from bootserve.install import InstallBoot, WimbootFile, windows_boot
from nodes import services as node_services
from nodes.models import Node, NodeEvent
from tests.factories import make_node, make_workflow
from workflows import services as workflow_services
from workflows.models import BootImage, WorkflowRun

BASE = "http://pb.test"
POLL = f"{BASE}/boot/ipxe?mac=${{net0/mac}}"


def facts(state: str, **kw) -> NodeFacts:
    return NodeFacts(
        id=7,
        name="win7",
        state=state,
        arch="x86_64",
        firmware=kw.pop("firmware", "uefi"),
        install_attempts=kw.pop("attempts", 1),
        can_install=True,
        **kw,
    )


def windows_image(**extra_files) -> BootImage:
    files = {
        "boot_wim": {"name": "boot.wim", "sha256": "0" * 64, "size": 10},
        "bcd": {"name": "BCD", "sha256": "1" * 64, "size": 10},
        "boot_sdi": {"name": "boot.sdi", "sha256": "2" * 64, "size": 10},
        "bootmgr": {"name": "bootmgr", "sha256": "3" * 64, "size": 10},
        "bootmgr_efi": {"name": "bootx64.efi", "sha256": "4" * 64, "size": 10},
        **extra_files,
    }
    return BootImage.objects.create(
        name="windows-22621-x86_64", family="windows", version="22621", arch="x86_64", files=files
    )


def wimboot() -> BootImage:
    return BootImage.objects.create(
        name="wimboot",
        family="wimboot",
        arch="x86_64",
        files={"wimboot": {"name": "wimboot", "sha256": "5" * 64, "size": 10}},
    )


@pytest.mark.parametrize("in_session", [False, True])
@pytest.mark.parametrize("attempts", [1, 3])
def test_an_install_that_wrote_its_disk_boots_the_disk_whatever_else_holds(in_session, attempts):
    """Setup restarts within seconds of WinPE's report: still the disk, never WinPE again,
    and never a failure for the attempts count."""
    decision = decide(
        facts("installing", disk_written=True, in_session=in_session, attempts=attempts),
        Client(firmware="bios"),
        Policy(max_install_attempts=3),
    )
    assert (decision.kind, decision.step) == (Kind.LOCAL, Step.NONE)
    assert "continues from the local disk" in decision.reason
    # Without the report the same boot is the install (or its retry).
    again = decide(facts("installing", in_session=True), Client(), Policy())
    assert again.kind == Kind.INSTALL


def test_a_windows_install_without_wimboot_waits_naming_what_to_import():
    decision = decide(facts("pending", missing_image=WIMBOOT), Client(), Policy())
    assert (decision.kind, decision.step) == (Kind.WAIT, Step.NONE)
    assert "manage.py import_wimboot" in decision.reason
    assert "github.com/ipxe/wimboot/releases" in decision.reason


@pytest.mark.django_db
def test_the_wimboot_file_list_differs_by_firmware():
    image = windows_image()
    assert windows_boot(image, token="TOK", base_url=BASE) is None  # no wimboot yet
    wimboot()
    boot = windows_boot(image, token="TOK", base_url=BASE)
    install = Decision(Kind.INSTALL, Step.START_INSTALL, "pending: starting the install", "bios")
    scripts = {
        fw: ipxe.render(
            Decision(install.kind, install.step, install.reason, fw),
            node_name="win7",
            state="installing",
            poll_url=POLL,
            poll_seconds=10,
            wait_seconds=600,
            install=boot,
        )
        for fw in ("bios", "uefi")
    }
    for fw, script in scripts.items():
        lines = script.splitlines()
        assert lines[0] == "#!ipxe"
        assert f"kernel {BASE}/boot/files/wimboot/wimboot || goto local" in lines
        fetched = [line.split()[2] for line in lines if line.startswith("initrd ")]
        manager = ["bootmgr"] if fw == "bios" else ["bootmgfw.efi"]
        assert fetched == [
            *manager,
            "BCD",
            "boot.sdi",
            "boot.wim",
            "winpeshl.ini",
            "pureboot.cmd",
            "autounattend.xml",
        ]
        image_file = f"initrd --name boot.wim {BASE}/boot/files/windows-22621-x86_64/boot.wim"
        assert f"{image_file} boot.wim || goto local" in lines
        # The node's own files may not be ready yet (offline join): retried, not given up.
        own = f"initrd --name autounattend.xml {BASE}/api/v1/install/TOK/autounattend.xml"
        assert f"{own} autounattend.xml || goto retry" in lines
        assert lines.index("boot || goto local") > max(
            i for i, line in enumerate(lines) if line.startswith("initrd ")
        )
        assert f"chain --replace --autofree {POLL} || goto local" in lines
        assert "sanboot" in script if fw == "bios" else "exit 1" in script


@pytest.mark.django_db
def test_pxelinux_and_grub_say_windows_needs_ipxe_and_boot_the_disk():
    wimboot()
    boot = windows_boot(windows_image(), token="TOK", base_url=BASE)
    decision = Decision(Kind.INSTALL, Step.NONE, "installing", "bios")
    config = pxelinux.render(decision, node_name="win7", state="installing", install=boot)
    assert "Windows Setup boots through iPXE (wimboot)" in config
    assert "KERNEL" not in config.replace("LOCALBOOT", "")
    uefi = Decision(Kind.INSTALL, Step.NONE, "installing", "uefi")
    cfg = grub.render(uefi, node_name="win7", state="installing", install=boot)
    assert "Windows Setup boots through iPXE (wimboot)" in cfg and "linux " not in cfg


def test_a_wimboot_file_is_fetched_only_on_its_firmware():
    boot = InstallBoot(
        kernel=f"{BASE}/boot/files/wimboot/wimboot",
        initrd="",
        cmdline="",
        wimboot_files=(WimbootFile("bootmgr", f"{BASE}/bootmgr", "bios"),),
    )
    uefi = Decision(Kind.INSTALL, Step.NONE, "installing", "uefi")
    script = ipxe.render(
        uefi,
        node_name="n",
        state="installing",
        poll_url=POLL,
        poll_seconds=1,
        wait_seconds=9,
        install=boot,
    )
    assert "bootmgr" not in script and "kernel " in script


@pytest.mark.django_db
def test_after_the_disk_written_report_the_node_boots_its_disk_until_it_reports_installed(api):
    """The report a node's token makes; then every boot (Django path and fast path) is the disk."""
    node = make_node(hostname="win7", macs=["52:54:00:77:00:01"])
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=make_workflow())
    client = api()
    first = client.get("/boot/ipxe", {"mac": "52:54:00:77:00:01"}).content.decode()
    assert "kernel http" in first  # the install starts
    run = WorkflowRun.objects.get(node=node)
    token = workflow_services.issue_token(run)
    resp = client.post(
        "/api/v1/report",
        {"status": "disk_written", "progress": 60, "logs": ["Setup wrote the disk"]},
        format="json",
        HTTP_AUTHORIZATION=f"Node {token}",
    )
    assert resp.status_code == 200, resp.content
    run.refresh_from_db()
    assert run.disk_written_at is not None and run.status == "running"
    event = NodeEvent.objects.filter(node=node, kind="report").latest("pk")
    assert "continues from the local disk" in event.message
    for _ in range(2):
        script = client.get("/boot/ipxe", {"mac": "52:54:00:77:00:01"}).content.decode()
        assert "kernel " not in script and "continues from the local disk" in script
    node.refresh_from_db()
    assert (node.state, node.install_attempts) == ("installing", 1)
    # A token of another node, or none, reports nothing.
    assert client.post("/api/v1/report", {"status": "disk_written"}, format="json").status_code in (
        401,
        403,
    )
    done = client.post(
        "/api/v1/report", {"status": "installed"}, format="json", HTTP_AUTHORIZATION=f"Node {token}"
    )
    assert done.status_code == 200
    assert Node.objects.get(pk=node.pk).state == "installed"
