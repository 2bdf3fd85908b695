"""Saving a workflow runs its installer config through the distribution's checker."""

import pytest

from tests.factories import make_user
from workflows.models import BootImage, Workflow

from .examples import UBUNTU_AUTOINSTALL

pytestmark = pytest.mark.django_db

KICKSTART = """\
name: rocky-9
arch: [x86_64]
firmware: [bios, uefi]
tasks:
  - type: kickstart
    distro: rocky
    version: "{version}"
    repo_url: http://mirror.example/rocky/9/BaseOS/x86_64/os/
    packages: [openssh-server]
"""


@pytest.fixture
def admin_client(api):
    return api(make_user("Admin"))


def test_valid_installer_workflows_save(admin_client):
    for doc in (UBUNTU_AUTOINSTALL, KICKSTART.format(version="9")):
        resp = admin_client.post("/api/v1/workflows", {"content": doc}, format="json")
        assert resp.status_code == 201, resp.content
        assert resp.json()["warnings"] == []


def test_kickstart_the_checker_refuses_is_not_saved(admin_client):
    resp = admin_client.post(
        "/api/v1/workflows", {"content": KICKSTART.format(version="99")}, format="json"
    )
    assert resp.status_code == 400, resp.content
    assert resp.json()["error"]["path"] == "tasks[0]"
    assert "checker" in resp.json()["error"]["message"]
    assert not Workflow.objects.exists()


def test_value_that_cannot_be_rendered_safely_is_refused(admin_client):
    doc = UBUNTU_AUTOINSTALL.replace("username: ops", 'username: "root; rm -rf /"')
    resp = admin_client.post("/api/v1/workflows", {"content": doc}, format="json")
    assert resp.status_code == 400
    assert resp.json()["error"]["path"] == "tasks[1]"
    assert not Workflow.objects.exists()


def test_missing_checker_is_said_not_passed(admin_client, monkeypatch):
    import workflows.installer_checks as checks

    real = checks.shutil.which
    monkeypatch.setattr(
        checks.shutil, "which", lambda cmd, *a, **k: None if cmd == "cloud-init" else real(cmd)
    )
    resp = admin_client.post("/api/v1/workflows", {"content": UBUNTU_AUTOINSTALL}, format="json")
    assert resp.status_code == 201
    assert any("cloud-init" in w for w in resp.json()["warnings"])


def test_a_boot_image_not_imported_is_refused_at_save(admin_client):
    """Red team: such a workflow sent nodes to installing, then looped until their
    attempts ran out."""
    doc = "name: netboot\ntasks:\n  - type: pxe_boot\n    boot_image: ubuntu-24.04\n"
    resp = admin_client.post("/api/v1/workflows", {"content": doc}, format="json")
    assert resp.status_code == 400
    text = str(resp.json())
    assert "tasks[0].boot_image" in text and "'ubuntu-24.04'" in text and "import_iso" in text
    assert not Workflow.objects.filter(name="netboot").exists()
    BootImage.objects.create(name="ubuntu-24.04", family="ubuntu", arch="x86_64")
    assert (
        admin_client.post("/api/v1/workflows", {"content": doc}, format="json").status_code == 201
    )


def test_admin_shows_checker_errors_inline(client):
    admin = make_user("Admin")
    admin.is_staff = True
    admin.save()
    client.force_login(admin)
    resp = client.post(
        "/admin/workflows/workflow/add/",
        {
            "content": KICKSTART.format(version="99"),
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
        },
    )
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "errorlist" in html and "tasks[0]" in html
    assert not Workflow.objects.exists()
    resp = client.post(
        "/admin/workflows/workflow/add/",
        {
            "content": "name: x\ntasks:\n  - type: [\n",
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
        },
    )
    assert "line 4, column 1: YAML syntax error" in resp.content.decode()


# --- the network boot reaches the installer's media (workflows.installer_media) ----

UBUNTU_NETBOOT = """\
name: ubuntu-net
arch: [x86_64]
tasks:
  - type: pxe_boot
    boot_image: {image}
{cmdline}  - type: ubuntu_autoinstall
    username: ops
"""


def _image(name: str, family: str, *roles: str) -> BootImage:
    files = {r: {"name": r, "sha256": "0" * 64, "size": 1} for r in ("kernel", "initrd", *roles)}
    return BootImage.objects.create(
        name=name, family=family, version="1", arch="x86_64", files=files
    )


def _save(client, doc: str):
    return client.post("/api/v1/workflows", {"content": doc}, format="json")


def test_an_ubuntu_image_without_its_iso_is_refused_naming_the_field(admin_client):
    """Red team: the live-server initrd downloads its ISO (url=); without one the node
    boots, finds nothing to install from, and drops to a BusyBox shell."""
    _image("ubuntu-old", "ubuntu")  # imported before import_iso kept the ISO
    resp = _save(admin_client, UBUNTU_NETBOOT.format(image="ubuntu-old", cmdline=""))
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["path"] == "tasks[0].boot_image"
    assert "url=" in error["message"] and "--name ubuntu-old --replace" in error["message"]
    assert not Workflow.objects.filter(name="ubuntu-net").exists()
    # The operator may name the ISO himself instead, as Ubuntu documents it.
    explicit = "    cmdline: url=http://mirror.example/ubuntu-24.04.2-live-server-amd64.iso\n"
    resp = _save(admin_client, UBUNTU_NETBOOT.format(image="ubuntu-old", cmdline=explicit))
    assert resp.status_code == 201 and resp.json()["warnings"] == []


def test_an_image_of_another_distribution_is_refused(admin_client):
    _image("debian-12", "debian")
    resp = _save(admin_client, UBUNTU_NETBOOT.format(image="debian-12", cmdline=""))
    assert resp.status_code == 400
    assert resp.json()["error"]["path"] == "tasks[0].boot_image"
    assert "holds debian" in resp.json()["error"]["message"]
    _image("fedora-40", "fedora", "stage2")
    doc = KICKSTART.format(version="9").replace(
        "tasks:\n", "tasks:\n  - type: pxe_boot\n    boot_image: fedora-40\n"
    )
    resp = _save(admin_client, doc)  # a rocky kickstart on Fedora's installer
    assert resp.status_code == 400 and "boots rocky media" in resp.json()["error"]["message"]


def test_an_arch_image_without_its_root_file_system_is_refused(admin_client):
    _image("arch-old", "arch")
    doc = (
        "name: arch\narch: [x86_64]\nfirmware: [uefi]\ntasks:\n"
        "  - type: pxe_boot\n    boot_image: arch-old\n  - type: arch_bootstrap\n"
    )
    resp = _save(admin_client, doc)
    assert resp.status_code == 400 and resp.json()["error"]["path"] == "tasks[0].boot_image"
    assert "airootfs.sfs" in resp.json()["error"]["message"]
    _image("arch-new", "arch", "rootfs")
    assert _save(admin_client, doc.replace("arch-old", "arch-new")).status_code == 201


def test_raw_kernel_paths_that_name_no_media_are_warned_about(admin_client):
    doc = UBUNTU_AUTOINSTALL.replace(
        '    cmdline: "ip=dhcp url=http://mirror.example/ubuntu-24.04.2-live-server-amd64.iso"\n',
        "",
    )
    assert "url=" not in doc
    resp = _save(admin_client, doc)
    assert resp.status_code == 201  # the initrd may carry its media: PureBoot cannot see
    (warning,) = [w for w in resp.json()["warnings"] if "not checked" not in w]
    assert warning.startswith("tasks[0].cmdline: ") and "url=" in warning
