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
