"""The node API as an automation engineer uses it: success and every refusal."""

import json

import pytest

from audit.models import AuditEvent
from nodes.models import Node, NodeEvent
from tests.factories import make_node, make_user, make_workflow

pytestmark = pytest.mark.django_db


def _create(client, **body):
    body.setdefault("interfaces", [{"mac": "52:54:00:aa:bb:01"}])
    return client.post("/api/v1/nodes", body, format="json")


def test_create_normalises_identifiers(api, admin_user, site_a):
    client = api(admin_user)
    resp = _create(
        client,
        hostname="Web01.Example.com",
        site="site-a",
        system_uuid="{4C4C4544-0042-3510-8052-B7C04F4E3732}",
        interfaces=[{"mac": "52-54-00-AA-BB-01", "name": "eno1"}, {"mac": "5254.00aa.bb02"}],
        tags=["rack-1"],
    )
    assert resp.status_code == 201, resp.content
    data = resp.json()
    assert data["hostname"] == "web01.example.com"
    assert data["system_uuid"] == "4c4c4544-0042-3510-8052-b7c04f4e3732"
    assert data["state"] == "discovered"
    assert [(i["mac"], i["is_primary"]) for i in data["interfaces"]] == [
        ("52:54:00:aa:bb:01", True),
        ("52:54:00:aa:bb:02", False),
    ]
    assert data["tags"] == ["rack-1"]
    node = Node.objects.get(pk=data["id"])
    assert NodeEvent.objects.filter(node=node, kind="created").exists()
    created = AuditEvent.objects.get(action="node.create")
    assert created.actor == "user:alice-admin"
    assert created.changes["hostname"]["after"] == "web01.example.com"


def test_pi_serial_normalised(api, admin_user):
    resp = _create(api(admin_user), firmware="pi", arch="aarch64", serial="0x1A2B3C4D")
    assert resp.status_code == 201, resp.content
    assert resp.json()["serial"] == "1a2b3c4d"
    resp = _create(
        api(admin_user),
        firmware="pi",
        arch="aarch64",
        serial="000000001a2b3c4d",
        interfaces=[{"mac": "dc:a6:32:00:00:02"}],
    )
    assert resp.status_code == 400
    assert "serial" in str(resp.json())


@pytest.mark.parametrize(
    "body,field,words",
    [
        ({"interfaces": [{"mac": "zz:zz"}]}, "interfaces", "aa:bb:cc:dd:ee:ff"),
        ({"system_uuid": "not-a-uuid"}, "system_uuid", "UUID"),
        ({"system_uuid": "00000000-0000-0000-0000-000000000000"}, "system_uuid", "placeholder"),
        ({"firmware": "pi", "arch": "aarch64", "serial": "xyz"}, "serial", "8 hexadecimal"),
        ({"hostname": "-bad-.example"}, "hostname", "labels"),
        ({"arch": "sparc"}, "arch", "valid choice"),
        ({"firmware": "pi", "arch": "x86_64"}, "arch", "Raspberry Pi"),
        ({"metadata": ["not", "an", "object"]}, "metadata", "object"),
        ({"metadata": {"k": "nul\u0000byte"}}, "metadata", "NUL"),
        ({"serial": "abc\u0007def"}, "serial", "control"),
        ({"interfaces": []}, "interfaces", "at least one"),
        ({"interfaces": [{"mac": "01:00:5e:00:00:01"}]}, "interfaces", "multicast"),
        (
            {"interfaces": [{"mac": "52:54:00:00:00:09"}, {"mac": "525400000009"}]},
            "interfaces",
            "twice",
        ),
    ],
)
def test_bad_input_is_400_naming_the_field(api, admin_user, body, field, words):
    resp = _create(api(admin_user), **body)
    assert resp.status_code == 400, resp.content
    errors = resp.json()
    assert field in errors, errors
    assert words in json.dumps(errors), errors
    assert Node.objects.count() == 0
    assert not AuditEvent.objects.filter(action="node.create").exists()


def test_mac_on_another_node_is_refused_with_its_id(api, admin_user):
    other = make_node(macs=["52:54:00:12:34:56"])
    resp = _create(api(admin_user), interfaces=[{"mac": "52-54-00-12-34-56"}])
    assert resp.status_code == 400
    assert f"already on node {other.pk}" in json.dumps(resp.json())
    assert Node.objects.count() == 1


def test_duplicate_hostname_and_uuid_refused(api, admin_user):
    make_node(hostname="db01", system_uuid="4c4c4544-0042-3510-8052-b7c04f4e3732")
    resp = _create(api(admin_user), hostname="DB01")
    assert resp.status_code == 400 and "host name already exists" in json.dumps(resp.json())
    resp = _create(
        api(admin_user),
        system_uuid="4C4C4544004235108052B7C04F4E3732",
        interfaces=[{"mac": "52:54:00:aa:bb:77"}],
    )
    assert resp.status_code == 400 and "system UUID" in json.dumps(resp.json())


def test_patch_edits_fields_not_state(api, admin_user):
    node = make_node(hostname="n1")
    client = api(admin_user)
    resp = client.patch(
        f"/api/v1/nodes/{node.pk}", {"hostname": "n2", "state": "active"}, format="json"
    )
    assert resp.status_code == 200
    assert resp.json()["hostname"] == "n2"
    assert resp.json()["state"] == "discovered"
    event = NodeEvent.objects.get(node=node, kind="edited")
    assert event.details["changes"]["hostname"] == {"before": "n1", "after": "n2"}
    assert AuditEvent.objects.get(action="node.update").changes["hostname"]["after"] == "n2"


def test_patch_replaces_interfaces(api, admin_user):
    node = make_node(macs=["52:54:00:00:00:01", "52:54:00:00:00:02"])
    resp = api(admin_user).patch(
        f"/api/v1/nodes/{node.pk}",
        {"interfaces": [{"mac": "52:54:00:00:00:02", "is_primary": True}, {"mac": "525400000003"}]},
        format="json",
    )
    assert resp.status_code == 200, resp.content
    assert [(i["mac"], i["is_primary"]) for i in resp.json()["interfaces"]] == [
        ("52:54:00:00:00:02", True),
        ("52:54:00:00:00:03", False),
    ]


def test_filters_ordering_pagination(api, admin_user, site_a, site_b):
    make_node(hostname="a1", site=site_a, macs=["52:54:00:00:01:01"], arch="x86_64")
    make_node("active", hostname="a2", site=site_a, arch="aarch64", serial="SN-2")
    make_node("failed", hostname="b1", site=site_b)
    client = api(admin_user)

    def names(query):
        resp = client.get("/api/v1/nodes" + query)
        assert resp.status_code == 200, resp.content
        return [n["hostname"] for n in resp.json()["results"]]

    assert names("?site=site-a") == ["a1", "a2"]
    assert names("?state=active&state=failed") == ["a2", "b1"]
    assert names("?mac=52-54-00-00-01-01") == ["a1"]
    assert names("?mac=garbage") == []
    assert names("?serial=SN-2") == ["a2"]
    assert names("?arch=aarch64") == ["a2"]
    assert names("?ordering=-hostname") == ["b1", "a2", "a1"]
    page = client.get("/api/v1/nodes?page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]


@pytest.mark.parametrize(
    "query,status",
    [
        ("?state=bogus", 400),
        ("?arch=sparc", 400),
        ("?firmware=efi", 400),
        ("?page=abc", 404),
        ("?page=999999999999", 404),
        ("?ordering=secret_field", 200),  # unknown ordering fields are ignored, as in DRF
    ],
)
def test_bad_filters_are_4xx(api, admin_user, query, status):
    make_node(hostname="n1")
    resp = api(admin_user).get("/api/v1/nodes" + query)
    assert resp.status_code == status, resp.content


def test_nul_byte_in_filter_is_400(api, admin_user):
    resp = api(admin_user).get("/api/v1/nodes", {"hostname": "a\x00b"})
    assert resp.status_code == 400


def test_state_change_success_conflict_and_forbidden(api, admin_user, operator_a, site_a):
    wf = make_workflow(name="ubuntu-2404-server")
    node = make_node(site=site_a)
    op = api(operator_a)
    resp = op.patch(
        f"/api/v1/nodes/{node.pk}/state",
        {"state": "pending", "workflow": "ubuntu-2404-server", "reason": "rack 4"},
        format="json",
    )
    assert resp.status_code == 200, resp.content
    assert resp.json()["state"] == "pending" and resp.json()["workflow"] == wf.name

    resp = op.patch(f"/api/v1/nodes/{node.pk}/state", {"state": "active"}, format="json")
    assert resp.status_code == 409
    body = resp.json()
    assert body["current_state"] == "pending"
    assert body["allowed_states"] == ["discovered", "retired"]
    assert "pending" in body["detail"]

    # installing is reached only by the machine fetching its installer
    resp = op.patch(f"/api/v1/nodes/{node.pk}/state", {"state": "installing"}, format="json")
    assert resp.status_code == 403
    assert "system" in resp.json()["detail"]

    # retiring a node that holds no installed system needs no second person
    resp = op.patch(
        f"/api/v1/nodes/{node.pk}/state", {"state": "retired", "reason": "eol"}, format="json"
    )
    assert resp.status_code == 200 and resp.json()["state"] == "retired"
    # bringing it back is an admin action
    resp = op.patch(f"/api/v1/nodes/{node.pk}/state", {"state": "discovered"}, format="json")
    assert resp.status_code == 403
    resp = api(admin_user).patch(
        f"/api/v1/nodes/{node.pk}/state", {"state": "discovered", "reason": "back"}, format="json"
    )
    assert resp.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"state": "nonsense"},
        {"state": "pending"},
        {"state": "pending", "workflow": "no-such-workflow"},
        {"state": "pending", "workflow": "x", "reason": "r" * 5000},
        {"action": "assign", "state": "retired"},
        "not json at all",
    ],
)
def test_state_change_bad_input_is_400(api, admin_user, body):
    make_workflow(name="x")
    node = make_node()
    client = api(admin_user)
    if isinstance(body, str):
        resp = client.generic(
            "PATCH", f"/api/v1/nodes/{node.pk}/state", body, content_type="application/json"
        )
    else:
        resp = client.patch(f"/api/v1/nodes/{node.pk}/state", body, format="json")
    assert resp.status_code == 400, resp.content
    assert Node.objects.get(pk=node.pk).state == "discovered"


def test_transitions_lists_what_this_user_may_do(api, admin_user, operator_a, site_a):
    node = make_node("installed", site=site_a)
    ops = {t["action"] for t in api(operator_a).get(f"/api/v1/nodes/{node.pk}/transitions").json()}
    assert ops == {"activate", "reprovision", "deprovision", "retire"}
    admin = api(admin_user).get(f"/api/v1/nodes/{node.pk}/transitions").json()
    assert {t["action"] for t in admin} == {"activate", "reprovision", "deprovision", "retire"}
    assert {t["action"]: t["destructive"] for t in admin}["reprovision"] is True


def test_events_endpoint(api, admin_user):
    node = make_node()
    wf = make_workflow()
    client = api(admin_user)
    client.patch(
        f"/api/v1/nodes/{node.pk}/state", {"state": "pending", "workflow": wf.name}, format="json"
    )
    resp = client.get(f"/api/v1/nodes/{node.pk}/events")
    assert resp.status_code == 200
    rows = resp.json()["results"]
    assert rows[0]["to_state"] == "pending" and rows[0]["actor"] == "user:alice-admin"
    assert client.get(f"/api/v1/nodes/{node.pk}/events?since=yesterday").status_code == 400


def test_delete_retires_and_keeps_history(api, admin_user):
    node = make_node("active")
    resp = api(admin_user).delete(f"/api/v1/nodes/{node.pk}?reason=decommissioned")
    assert resp.status_code == 202  # an installed system is destroyed: four eyes
    request = resp.json()["approval_request"]
    assert request["action"] == "retire" and request["node"] == node.pk
    node.refresh_from_db()
    assert node.state == "active"
    second = make_user("Admin", username="bob-admin")
    assert api(second).post(f"/api/v1/approvals/{request['id']}/approve").status_code == 200
    node.refresh_from_db()
    assert node.state == "retired"
    assert NodeEvent.objects.filter(node=node, to_state="retired").exists()
    assert api(admin_user).delete(f"/api/v1/nodes/{node.pk}").status_code == 409


@pytest.mark.parametrize(
    "path", ["/api/v1/nodes/abc", "/api/v1/nodes/99999999999999999999999", "/api/v1/nodes/424242"]
)
def test_unknown_ids_are_404(api, admin_user, path):
    assert api(admin_user).get(path).status_code == 404


def test_oversized_body_is_400(api, admin_user, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    resp = api(admin_user).post(
        "/api/v1/nodes",
        json.dumps({"hostname": "x", "metadata": {"blob": "x" * 5000}}),
        content_type="application/json",
    )
    assert resp.status_code == 400


def test_metadata_size_limit(api, admin_user):
    resp = _create(api(admin_user), metadata={"blob": "x" * 70000})
    assert resp.status_code == 400 and "limit" in json.dumps(resp.json())


def test_put_not_allowed(api, admin_user):
    node = make_node()
    assert api(admin_user).put(f"/api/v1/nodes/{node.pk}", {}, format="json").status_code == 405


def test_anonymous_gets_401(api):
    assert api().get("/api/v1/nodes").status_code == 401


def test_jwt_login_and_refresh(api, admin_user, client):
    resp = client.post(
        "/api/v1/auth/token",
        {"username": "alice-admin", "password": "test-pass-1234"},
        content_type="application/json",
    )
    assert resp.status_code == 200
    tokens = resp.json()
    anon = api()
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert anon.get("/api/v1/nodes").status_code == 200
    resp = client.post(
        "/api/v1/auth/token/refresh",
        {"refresh": tokens["refresh"]},
        content_type="application/json",
    )
    assert resp.status_code == 200 and resp.json()["access"]
    bad = client.post(
        "/api/v1/auth/token",
        {"username": "alice-admin", "password": "wrong"},
        content_type="application/json",
    )
    assert bad.status_code == 401


def test_schema_and_docs(client, admin_user):
    schema = client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    for path in (
        "/api/v1/nodes",
        "/api/v1/nodes/{id}",
        "/api/v1/nodes/{id}/state",
        "/api/v1/nodes/{id}/transitions",
        "/api/v1/nodes/{id}/events",
        "/api/v1/audit",
    ):
        assert path in paths, sorted(paths)
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
