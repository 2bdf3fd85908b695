"""The shipped example workflows import cleanly, and their installers pass their checkers."""

import re
from io import StringIO
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from credentials import services as credentials
from tests.factories import sealed
from workflows.models import BootImage, Workflow

from .test_rootfs import make_archive, system_members

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "workflows"

pytestmark = pytest.mark.django_db


# The family import_iso gives each boot image the examples name, by its name's prefix,
# and the files it registers (tests/bootserve/test_install_media.py imports real ISOs).
FAMILIES = {
    "ubuntu": "ubuntu",
    "debian": "debian",
    "rocky": "rocky",
    "archlinux": "arch",
    "windows": "windows",
}
ROLES = ("kernel", "initrd", "iso", "rootfs", "stage2", "treeinfo")
# What import_iso records of a Windows 11 ISO's install.wim (its editions).
WINDOWS_EDITIONS = ["Windows 11 Home", "Windows 11 Education", "Windows 11 Pro"]


@pytest.fixture
def windows_ready(settings):
    """What the Windows example needs besides its boot image: wimboot, the SMB share
    and its credentials (as its comment says)."""
    settings.PUREBOOT_FERNET_KEYS = [Fernet.generate_key().decode()]
    settings.PUREBOOT_WINDOWS_SHARE = "\\\\pureboot.example.com\\pureboot-boot"
    BootImage.objects.create(name="wimboot", family="wimboot", arch="x86_64")
    for name, kind in (("win-local-admin", "windows_admin"), ("corp-join", "domain_join")):
        credentials.create_credential(
            "user:setup",
            {
                "name": name,
                "kind": kind,
                "username": "CORP\\svc" if kind == "domain_join" else "Administrator",
                "scope": "corp.example.com" if kind == "domain_join" else "",
            },
            {"password": "example-password"},
            approval=sealed("credential.create", f"credential:new:{name}", ""),
        )


@pytest.fixture
def pi_template(settings, tmp_path):
    """NFS root on, and the root file system the Raspberry Pi OS example boots imported."""
    settings.PUREBOOT_NFSROOT_DIR = tmp_path / "nfsroot"
    settings.PUREBOOT_BOOT_ROOT = tmp_path / "boot"
    settings.PUREBOOT_NFS_SERVER = "10.99.0.1"
    settings.PUREBOOT_NFS_GANESHA_CONFIG = ""
    archive = make_archive(tmp_path / "raspios.tar.zst", system_members(), "tar.zst")
    call_command(
        "import_rootfs", "raspios-lite-arm64", str(archive), "--arch", "aarch64", stdout=StringIO()
    )


def test_examples_import_and_pass_their_checkers(pi_template, windows_ready):
    # The boot images the examples name are imported first (as the README says).
    for name in re.findall(
        r"boot_image: (\S+)", "".join(p.read_text() for p in EXAMPLES.glob("*"))
    ):
        BootImage.objects.get_or_create(
            name=name,
            defaults={
                "family": FAMILIES[name.split("-")[0]],
                "arch": "x86_64",
                "files": {
                    **{role: {"name": role, "sha256": "0" * 64, "size": 1} for role in ROLES},
                    "install_wim": {
                        "name": "install.wim",
                        "images": [
                            {"index": i + 1, "name": n} for i, n in enumerate(WINDOWS_EDITIONS)
                        ],
                    },
                },
            },
        )
    out, err = StringIO(), StringIO()
    call_command("import_workflows", str(EXAMPLES), stdout=out, stderr=err)
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert f"{len(files)} changed, 0 unchanged" in out.getvalue()
    assert Workflow.objects.count() == len(files) >= 7
    for line in err.getvalue().splitlines():
        assert "not checked" in line, line  # only a checker missing on this machine
    windows = Workflow.objects.get(name="windows-11-offline-join").versions.get()
    assert [t["type"] for t in windows.tasks] == ["pxe_boot", "windows_install", "domain_join"]
    assert windows.tasks[2]["mode"] == "offline"
    pi = Workflow.objects.get(name="raspberry-pi-os").versions.get()
    assert [t["type"] for t in pi.tasks] == ["nfs_root", "raspberrypi_os"]
    assert pi.tasks[0]["root"] == "raspios-lite-arm64"
    assert pi.tasks[0]["overlay"] == ["/etc", "/var", "/home"]
    assert (pi.definition["arch"], pi.definition["firmware"]) == (["aarch64"], ["pi"])


def test_the_raspberry_pi_example_needs_its_root_file_system(settings):
    settings.PUREBOOT_NFS_SERVER = "10.99.0.1"
    with pytest.raises(CommandError, match="no root file system 'raspios-lite-arm64' is imported"):
        call_command("import_workflows", str(EXAMPLES / "raspberry-pi-os.yaml"), stdout=StringIO())
    assert not Workflow.objects.exists()


def test_an_example_naming_an_image_not_imported_is_refused():
    out = StringIO()
    with pytest.raises(CommandError, match="no boot image 'rocky-9.4-x86_64-baseos' is imported"):
        call_command("import_workflows", str(EXAMPLES / "rocky-9-kickstart.yaml"), stdout=out)
    assert not Workflow.objects.exists()


def test_the_tests_use_the_shipped_examples():
    from .examples import CLOUD_VM, UBUNTU_SERVER

    assert (EXAMPLES / "ubuntu-2404-server.yaml").read_text() == UBUNTU_SERVER
    assert (EXAMPLES / "cloud-init-vm.yaml").read_text() == CLOUD_VM
