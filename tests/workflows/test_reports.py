"""Installer reports with per-node tokens move the lifecycle; bad tokens get nothing."""

from datetime import timedelta

import pytest
from django.core import signing
from django.utils import timezone

from audit.models import AuditEvent
from nodes import services as node_services
from nodes.models import Node, NodeEvent
from tests.factories import make_node, make_user, make_workflow, perform_approved
from workflows import services
from workflows.models import RunLogLine, WorkflowRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def installing():
    """A node that fetched its installer: (node, run, token)."""
    node = make_node(hostname="web01")
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=make_workflow())
    return services.start_install(node.pk)


def _report(client, token, **body):
    return client.post("/api/v1/report", body, format="json", HTTP_AUTHORIZATION=f"Node {token}")


def test_start_install_opens_a_run_with_steps(installing):
    node, run, token = installing
    assert node.state == "installing" and node.install_attempts == 1
    assert run.status == "running" and [s["type"] for s in run.steps] == ["pxe_boot"]
    assert services.resolve_token(token) == run


def test_progress_then_completion_then_first_boot(api, installing):
    node, run, token = installing
    client = api()
    resp = _report(client, token, status="installing", progress=40, logs=["partitioned", "base"])
    assert resp.status_code == 200, resp.content
    assert resp.json()["progress"] == 40
    assert list(RunLogLine.objects.filter(run=run).values_list("line", flat=True)) == [
        "partitioned",
        "base",
    ]
    assert NodeEvent.objects.filter(node=node, kind="report").exists()
    resp = _report(client, token, status="installed", progress=100, node_id="web01")
    assert resp.status_code == 200
    assert Node.objects.get(pk=node.pk).state == "installed"
    assert WorkflowRun.objects.get(pk=run.pk).status == "succeeded"
    event = AuditEvent.objects.get(action="node.complete_install")
    assert event.actor == f"node:{node.pk}"
    # the install is over: only the first-boot report is still accepted
    assert _report(client, token, status="installing", progress=5).status_code == 401
    resp = _report(client, token, status="active")
    assert resp.status_code == 200
    assert Node.objects.get(pk=node.pk).state == "active"
    # and then the token is dead for good
    assert _report(client, token, status="active").status_code == 401


def test_failure_report_fails_the_node(api, installing):
    node, run, token = installing
    resp = _report(api(), token, status="failed", logs=["disk /dev/sda not found"])
    assert resp.status_code == 200
    assert Node.objects.get(pk=node.pk).state == "failed"
    run.refresh_from_db()
    assert run.status == "failed" and "sda" in run.error


def test_first_boot_window_expires(api, installing):
    node, run, token = installing
    _report(api(), token, status="installed")
    WorkflowRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(days=2))
    assert _report(api(), token, status="active").status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Node",
        "Node not-a-token",
        "Node a b",
        "Bearer something",
        "Node " + signing.dumps({"r": 999, "n": 1, "x": "x"}, salt="pureboot.node-token"),
        "Node " + signing.dumps({"r": 1}, salt="wrong-salt"),
        "Node " + "x" * 2000,
    ],
)
def test_bad_tokens_are_refused(api, installing, header):
    node, run, token = installing
    kwargs = {"HTTP_AUTHORIZATION": header} if header else {}
    resp = api().post("/api/v1/report", {"status": "installed"}, format="json", **kwargs)
    assert resp.status_code in (401, 403)
    assert Node.objects.get(pk=node.pk).state == "installing"


def test_token_of_another_node_claims(api, installing):
    node, run, token = installing
    resp = _report(api(), token, status="installed", node_id="someone-else")
    assert resp.status_code == 403
    assert Node.objects.get(pk=node.pk).state == "installing"


def test_reinstall_invalidates_the_old_token(api, installing):
    node, run, token = installing
    _report(api(), token, status="installed")
    perform_approved(node.pk, "reprovision", make_user("Admin"), make_user("Admin"))
    _, new_run, new_token = services.start_install(node.pk)
    assert _report(api(), token, status="installing").status_code == 401
    assert _report(api(), new_token, status="installing", progress=10).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"status": "exploded"},
        {"status": "installing", "progress": 101},
        {"status": "installing", "progress": -1},
        {"status": "installing", "logs": "not a list"},
        {"status": "installing", "logs": ["x"] * 500},
        {"status": "installing", "logs": ["x" * 5000]},
    ],
)
def test_bad_report_bodies_are_400_and_change_nothing(api, installing, body):
    node, run, token = installing
    resp = _report(api(), token, **body)
    assert resp.status_code == 400
    assert WorkflowRun.objects.get(pk=run.pk).progress == 0
    assert Node.objects.get(pk=node.pk).state == "installing"


@pytest.mark.parametrize("how", ["retire", "timeout"])
def test_token_dies_when_the_node_leaves_installing(api, installing, how):
    node, run, token = installing
    if how == "retire":
        node_services.perform(node.pk, "retire", node_services.SYSTEM)
    else:
        Node.objects.filter(pk=node.pk).update(state_changed_at=timezone.now() - timedelta(days=1))
        assert node_services.fail_stuck_installs(timeout_minutes=60) == [node.pk]
    assert api().get(f"/api/v1/install/{token}/user-data").status_code == 404
    assert _report(api(), token, status="installed", logs=["done"]).status_code == 401
    run.refresh_from_db()
    assert run.status == "failed" and "ended without a report" in run.error
    assert not RunLogLine.objects.filter(run=run).exists()  # nothing half-written


def test_close_stale_runs_task(installing):
    from workflows.tasks import close_stale_runs

    node, run, token = installing
    assert close_stale_runs() == 0
    node_services.perform(node.pk, "retire", node_services.SYSTEM)
    assert close_stale_runs() == 1
    assert WorkflowRun.objects.get(pk=run.pk).status == "failed"


def test_report_refused_when_the_move_is_not_allowed(api, installing):
    node, run, token = installing
    # the token is valid (node installing) but `active` is not a move from installing
    resp = _report(api(), token, status="active", logs=["too early"])
    assert resp.status_code == 409
    assert Node.objects.get(pk=node.pk).state == "installing"
    assert not RunLogLine.objects.filter(run=run).exists()  # nothing half-written


def test_progress_never_goes_backwards(api, installing):
    node, run, token = installing
    _report(api(), token, status="installing", progress=70)
    _report(api(), token, status="installing", progress=30)
    assert WorkflowRun.objects.get(pk=run.pk).progress == 70


def test_runs_and_logs_are_listed_for_operators(api, installing, site_a):
    from tests.factories import make_user

    node, run, token = installing
    _report(api(), token, status="installing", progress=10, logs=["one", "two"])
    admin = api(make_user("Admin"))
    runs = admin.get(f"/api/v1/nodes/{node.pk}/runs").json()["results"]
    assert runs[0]["id"] == run.pk and runs[0]["progress"] == 10
    assert runs[0]["workflow"] == run.version.workflow.name
    logs = admin.get(f"/api/v1/nodes/{node.pk}/runs/{run.pk}/logs").json()["results"]
    assert [line["line"] for line in logs] == ["one", "two"]
    other_site = api(make_user("Operator", sites=[site_a]))  # the node has no site
    assert other_site.get(f"/api/v1/nodes/{node.pk}/runs").status_code == 404
    assert admin.get(f"/api/v1/nodes/{node.pk}/runs/999/logs").status_code == 404
