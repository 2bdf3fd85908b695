"""Workflows through the API: versions, pinning, deletion rules, task types."""

import pytest

from audit.models import AuditEvent
from nodes import services as node_services
from tests.factories import make_node, make_user
from workflows.models import Workflow, WorkflowVersion

from .examples import CLOUD_VM, UBUNTU_SERVER

# The Ubuntu example names a boot image: it must be imported before the workflow saves.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("ubuntu_boot_image")]


@pytest.fixture
def admin_client(api):
    return api(make_user("Admin", username="wendy"))


def test_create_from_json_and_from_raw_yaml(admin_client):
    resp = admin_client.post("/api/v1/workflows", {"content": UBUNTU_SERVER}, format="json")
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["name"] == "ubuntu-2404-server"
    assert body["latest_version"]["number"] == 1
    assert body["latest_version"]["author_name"] == "wendy"
    assert [t["type"] for t in body["tasks"]][:2] == ["pxe_boot", "ubuntu_autoinstall"]
    resp = admin_client.generic(
        "POST", "/api/v1/workflows", CLOUD_VM, content_type="application/yaml"
    )
    assert resp.status_code == 201, resp.content
    assert AuditEvent.objects.filter(action="workflow.create").count() == 2


def test_same_content_makes_no_new_version_changed_content_does(admin_client):
    first = admin_client.post("/api/v1/workflows", {"content": UBUNTU_SERVER}, format="json")
    wid = first.json()["id"]
    again = admin_client.post("/api/v1/workflows", {"content": UBUNTU_SERVER}, format="json")
    assert again.status_code == 200 and again.json()["latest_version"]["number"] == 1
    changed = UBUNTU_SERVER.replace("by PureBoot", "by PureBoot v3")
    resp = admin_client.patch(f"/api/v1/workflows/{wid}", {"content": changed}, format="json")
    assert resp.status_code == 200 and resp.json()["latest_version"]["number"] == 2
    versions = admin_client.get(f"/api/v1/workflows/{wid}/versions").json()["results"]
    assert [v["number"] for v in versions] == [2, 1]
    v1 = admin_client.get(f"/api/v1/workflows/{wid}/versions/1").json()
    assert v1["content"] == UBUNTU_SERVER
    assert admin_client.get(f"/api/v1/workflows/{wid}/versions/9").status_code == 404


def test_versions_are_immutable():
    from workflows.services import save_workflow

    version = save_workflow(UBUNTU_SERVER, node_services.SYSTEM).version
    version.content = "tampered"
    with pytest.raises(Exception, match="immutable"):
        version.save()


def test_bad_yaml_is_400_with_position_and_nothing_saved(admin_client):
    resp = admin_client.post(
        "/api/v1/workflows", {"content": "name: x\ntasks:\n  - type: [\n"}, format="json"
    )
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["line"] and error["column"]
    resp = admin_client.post(
        "/api/v1/workflows",
        {"content": "name: x\ntasks:\n  - type: reboot\n  - type: image_deploy\n"},
        format="json",
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["path"] == "tasks[1].image"
    assert not Workflow.objects.exists() and not WorkflowVersion.objects.exists()


def test_rename_through_patch_refused(admin_client):
    wid = admin_client.post("/api/v1/workflows", {"content": UBUNTU_SERVER}, format="json").json()[
        "id"
    ]
    renamed = UBUNTU_SERVER.replace("name: ubuntu-2404-server", "name: other")
    resp = admin_client.patch(f"/api/v1/workflows/{wid}", {"content": renamed}, format="json")
    assert resp.status_code == 400 and "renaming" in str(resp.json())


def test_assign_pins_the_version_and_edits_do_not_move_it(admin_client):
    wid = admin_client.post("/api/v1/workflows", {"content": UBUNTU_SERVER}, format="json").json()[
        "id"
    ]
    node = make_node()
    resp = admin_client.patch(
        f"/api/v1/nodes/{node.pk}/state",
        {"state": "pending", "workflow": "ubuntu-2404-server"},
        format="json",
    )
    assert resp.status_code == 200
    assert resp.json()["workflow_version"] == 1
    admin_client.patch(
        f"/api/v1/workflows/{wid}",
        {"content": UBUNTU_SERVER.replace("by PureBoot", "by PureBoot v2")},
        format="json",
    )
    assert admin_client.get(f"/api/v1/nodes/{node.pk}").json()["workflow_version"] == 1


def test_assign_refuses_a_workflow_for_other_hardware(admin_client):
    doc = "name: pi-only\narch: [aarch64]\nfirmware: [pi]\ntasks:\n  - type: raspberrypi_os\n"
    admin_client.post("/api/v1/workflows", {"content": doc}, format="json")
    node = make_node(arch="x86_64", firmware="uefi")
    resp = admin_client.patch(
        f"/api/v1/nodes/{node.pk}/state", {"state": "pending", "workflow": "pi-only"}, format="json"
    )
    assert resp.status_code == 400 and "aarch64" in str(resp.json())


def test_delete_refused_while_pinned_then_archived_then_deleted(admin_client):
    wid = admin_client.post("/api/v1/workflows", {"content": UBUNTU_SERVER}, format="json").json()[
        "id"
    ]
    workflow = Workflow.objects.get(pk=wid)
    node = make_node()
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=workflow)
    resp = admin_client.delete(f"/api/v1/workflows/{wid}")
    assert resp.status_code == 409
    assert resp.json()["nodes"] == [node.pk] and str(node.pk) in resp.json()["detail"]
    node_services.perform(node.pk, "retire", node_services.SYSTEM)
    assert admin_client.delete(f"/api/v1/workflows/{wid}").status_code == 204
    assert Workflow.objects.get(pk=wid).archived_at is not None  # kept for the retired node
    assert admin_client.get(f"/api/v1/workflows/{wid}").status_code == 404
    other = admin_client.post("/api/v1/workflows", {"content": CLOUD_VM}, format="json").json()
    assert admin_client.delete(f"/api/v1/workflows/{other['id']}").status_code == 204
    assert not Workflow.objects.filter(pk=other["id"]).exists()


def test_operators_read_but_do_not_write_workflows(api, site_a):
    operator = make_user("Operator", sites=[site_a])
    client = api(operator)
    assert client.get("/api/v1/workflows").status_code == 200
    resp = client.post("/api/v1/workflows", {"content": UBUNTU_SERVER}, format="json")
    assert resp.status_code == 403


def test_task_types_listing(admin_client):
    resp = admin_client.get("/api/v1/workflows/task-types")
    assert resp.status_code == 200
    by_name = {t["name"]: t for t in resp.json()}
    assert by_name["kickstart"]["renders"] == "kickstart"
    params = {p["name"]: p for p in by_name["reboot"]["params"]}
    assert params["delay"] == {
        "name": "delay",
        "type": "int",
        "required": False,
        "default": 0,
        "choices": [],
        "help": "",
    }


@pytest.mark.parametrize(
    "body,ctype",
    [
        ("\xff\xfe", "application/yaml"),
        ("{}", "application/json"),
        ('{"content": 5}', "application/json"),
        ('{"content": "' + "a" * 300_000 + '"}', "application/json"),
    ],
)
def test_bad_bodies_are_400(admin_client, body, ctype):
    data = body.encode("latin-1") if ctype == "application/yaml" else body
    resp = admin_client.generic("POST", "/api/v1/workflows", data, content_type=ctype)
    assert resp.status_code == 400


def test_task_types_say_which_are_available(admin_client):
    types = {t["name"]: t for t in admin_client.get("/api/v1/workflows/task-types").json()}
    assert types["ubuntu_autoinstall"]["available"] is True
    assert types["disk_wipe"]["available"] is True
    assert types["domain_join"]["available"] is True
    assert types["windows_install"]["available"] is True
    assert types["reboot"]["available"] is False
    assert "restart" in types["reboot"]["not_available_because"]
