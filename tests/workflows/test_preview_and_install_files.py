"""The operator's preview and the token-protected installer files a node fetches."""

import pytest

from nodes import services as node_services
from nodes.models import Node, NodeEvent
from tests.factories import make_node, make_user, make_workflow
from workflows import services
from workflows.models import WorkflowRun

from .examples import UBUNTU_AUTOINSTALL

pytestmark = pytest.mark.django_db


@pytest.fixture
def assigned(site_a):
    workflow = make_workflow("ubuntu-autoinstall", UBUNTU_AUTOINSTALL)
    node = make_node(site=site_a, hostname="web01.lab.example.com")
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=workflow)
    return Node.objects.get(pk=node.pk)


def test_preview_renders_and_checks_without_changing_anything(api, assigned, site_a):
    client = api(make_user("Operator", sites=[site_a]))
    events_before = NodeEvent.objects.filter(node=assigned).count()
    resp = client.get(f"/api/v1/nodes/{assigned.pk}/preview")
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["installer"] == "ubuntu_autoinstall" and body["version"] == 1
    assert set(body["files"]) >= {"user-data", "meta-data", "vendor-data"}
    assert body["checks"]["ok"] is True, body["checks"]
    user_data = body["files"]["user-data"]
    assert "web01" in user_data and "/api/v1/report" in user_data
    assert "PREVIEW-TOKEN" in user_data
    assert Node.objects.get(pk=assigned.pk).state == "pending"
    assert not WorkflowRun.objects.exists()
    assert NodeEvent.objects.filter(node=assigned).count() == events_before


def test_preview_without_installer_or_workflow(api, site_a):
    admin = api(make_user("Admin"))
    bare = make_node(site=site_a)
    body = admin.get(f"/api/v1/nodes/{bare.pk}/preview").json()
    assert body["files"] == {} and "no workflow" in body["installer_note"]
    assert "waiting for an assignment" in body["boot"]["ipxe-bios"]
    node = make_node(site=site_a)
    node_services.perform(
        node.pk,
        "assign",
        node_services.SYSTEM,
        # A network boot and no installer: nothing to render.
        workflow=make_workflow(
            "u", "name: u\ntasks:\n  - type: pxe_boot\n    kernel: /k\n    initrd: /i\n"
        ),
    )
    body = admin.get(f"/api/v1/nodes/{node.pk}/preview").json()
    assert body["installer"] is None and body["files"] == {}


def test_preview_is_site_scoped(api, assigned, site_a):
    from tests.factories import SiteFactory

    other = make_user("Operator", sites=[SiteFactory(slug="elsewhere")])
    assert api(other).get(f"/api/v1/nodes/{assigned.pk}/preview").status_code == 404
    assert api().get(f"/api/v1/nodes/{assigned.pk}/preview").status_code == 401


def test_node_fetches_its_files_with_its_token(api, assigned):
    _, run, token = services.start_install(assigned.pk)
    client = api()
    resp = client.get(f"/api/v1/install/{token}/user-data")
    assert resp.status_code == 200
    text = resp.content.decode()
    assert token in text and "PREVIEW-TOKEN" not in text
    assert resp["Content-Type"].startswith("text/plain")
    assert client.get(f"/api/v1/install/{token}/meta-data").status_code == 200
    assert client.get(f"/api/v1/install/{token}/etc-passwd").status_code == 404
    assert client.get("/api/v1/install/forged-token/user-data").status_code == 404
    assert Node.objects.get(pk=assigned.pk).last_seen_at is not None
    # once the install has ended, the files are gone with the token
    client.post(
        "/api/v1/report",
        {"status": "installed"},
        format="json",
        HTTP_AUTHORIZATION=f"Node {token}",
    )
    assert client.get(f"/api/v1/install/{token}/user-data").status_code == 404


def test_password_hashes_are_hidden_from_roles_that_cannot_change_workflows(api, assigned, site_a):
    from .examples import UBUNTU_AUTOINSTALL as doc

    secret = doc.split('password_hash: "')[1].split('"')[0]
    operator = api(make_user("Operator", sites=[site_a]))
    auditor = api(make_user("Auditor"))
    admin = api(make_user("Admin"))
    wid = assigned.workflow_id
    for client in (operator, auditor):
        assert secret not in client.get(f"/api/v1/workflows/{wid}").content.decode()
        assert secret not in client.get(f"/api/v1/workflows/{wid}/versions/1").content.decode()
        assert secret not in client.get("/api/v1/workflows").content.decode()
    preview = operator.get(f"/api/v1/nodes/{assigned.pk}/preview").json()
    assert secret not in str(preview) and "[redacted]" in preview["files"]["user-data"]
    assert preview["checks"]["ok"] is True  # checked on the real file
    assert secret in admin.get(f"/api/v1/workflows/{wid}/versions/1").content.decode()


def test_steps_after_the_installer_are_rendered_into_it(api, site_a):
    doc = UBUNTU_AUTOINSTALL.replace("name: ubuntu-autoinstall", "name: with-steps") + (
        "  - type: package_install\n    packages: [htop]\n"
        "  - type: script_run\n    script: /scripts/post-install.sh\n"
        "  - type: script_run\n    script: echo configured > /etc/motd\n"
    )
    node = make_node(site=site_a)
    node_services.perform(
        node.pk, "assign", node_services.SYSTEM, workflow=make_workflow("with-steps", doc)
    )
    body = api(make_user("Admin")).get(f"/api/v1/nodes/{node.pk}/preview").json()
    user_data = body["files"]["user-data"]
    assert "htop" in user_data and "/scripts/post-install.sh" in user_data
    assert "echo configured" in user_data
    assert body["checks"]["ok"] is True, body["checks"]
