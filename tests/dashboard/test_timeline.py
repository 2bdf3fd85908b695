"""A node's timeline: every source merged newest first, paged by cursor, scoped like the node."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals import services as approvals
from bootserve import records as boot_records
from nodes import services as node_services
from tests.factories import make_user
from workflows import services as workflow_services
from workflows.models import RunLogLine, WorkflowRun

from .conftest import installing_node, staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(site_a, admin):
    """A node with transitions, reports, log lines, boots, a finished install and an approval."""
    node, run = installing_node(site_a, "web01", admin, logs=("partitioned", "base system"))
    # Through the boot records' one write path, as the boot services record them.
    for protocol, outcome, asked in (
        ("http", "install", "/boot/ipxe"),
        ("tftp", "file_sent", "ipxe.efi"),
    ):
        boot_records.record_boot(
            protocol,
            outcome,
            address="10.0.0.5",
            mac="52:54:00:00:00:01",
            node_id=node.pk,
            site_id=site_a.pk,
            node_state="installing",
            asked=asked,
            answer="iPXE script: install",
        )
    workflow_services.handle_report(run.pk, {"status": "installed", "logs": ["done"]})
    requester = staff("Operator", sites=[site_a], username="req-op")
    with pytest.raises(node_services.ApprovalRequired) as exc:
        node_services.perform(
            node.pk, "reprovision", node_services.Actor.of(requester), reason="new disks"
        )
    filed = approvals.file(exc.value.proposal, requester)
    approvals.reject(filed.pk, admin, "not this week")
    return node


def _all_pages(client, url: str, limit: int) -> list[dict]:
    entries, next_url, pages = [], f"{url}?limit={limit}", 0
    while next_url:
        resp = client.get(next_url)
        assert resp.status_code == 200, resp.content
        body = resp.json()
        assert len(body["results"]) <= limit
        entries += body["results"]
        next_url = body["next"]
        pages += 1
        assert pages < 100
    return entries


def test_every_source_merged_newest_first_across_pages(api, history, admin):
    client = api(admin)
    url = f"/api/v1/nodes/{history.pk}/timeline"
    whole = client.get(url, {"limit": 200}).json()["results"]
    assert whole and client.get(url, {"limit": 200}).json()["next"] is None
    sources = {e["source"] for e in whole}
    assert sources == {"event", "audit", "boot", "install", "log", "approval"}
    stamps = [e["at"] for e in whole]
    assert stamps == sorted(stamps, reverse=True)
    # paging 3 at a time gives the same entries in the same order, none twice
    paged = _all_pages(client, url, 3)
    assert [(e["source"], e["kind"], e["summary"]) for e in paged] == [
        (e["source"], e["kind"], e["summary"]) for e in whole
    ]
    kinds = {(e["source"], e["kind"]) for e in whole}
    for expected in [
        ("event", "transition"),
        ("event", "report"),
        ("boot", "install"),
        ("boot", "file_sent"),
        ("install", "started"),
        ("install", "succeeded"),
        ("log", "installer"),
        ("approval", "requested"),
        ("approval", "rejected"),
        ("audit", "node.complete_install"),
    ]:
        assert expected in kinds, expected
    rejected = [e for e in whole if e["kind"] == "rejected" and e["source"] == "approval"]
    assert "not this week" in rejected[0]["summary"] and rejected[0]["url"].startswith(
        "/approvals/"
    )


def test_new_entries_do_not_shift_the_next_page(api, history, admin):
    client = api(admin)
    url = f"/api/v1/nodes/{history.pk}/timeline"
    first = client.get(url, {"limit": 4}).json()
    node_services.perform(history.pk, "activate", node_services.Actor.of(admin), reason="later")
    second = client.get(first["next"]).json()["results"]
    whole = client.get(url, {"limit": 200}).json()["results"]
    ids = [(e["source"], e["kind"], e["at"]) for e in whole]
    start = ids.index((second[0]["source"], second[0]["kind"], second[0]["at"]))
    assert ids[start - 1] == (
        first["results"][-1]["source"],
        first["results"][-1]["kind"],
        first["results"][-1]["at"],
    )


def test_source_filter(api, history, admin):
    body = api(admin).get(f"/api/v1/nodes/{history.pk}/timeline?source=boot,log").json()
    assert {e["source"] for e in body["results"]} == {"boot", "log"}


def test_scope_operators_of_other_sites_get_404(api, history, site_b):
    other = staff("Operator", sites=[site_b])
    assert api(other).get(f"/api/v1/nodes/{history.pk}/timeline").status_code == 404
    body = api(other).get(f"/api/v1/nodes/{history.pk}/timeline").json()
    assert body["code"] == "not_found"


def test_audit_events_only_for_audit_readers(api, history, site_a, auditor):
    operator = staff("Operator", sites=[site_a])
    seen = api(operator).get(f"/api/v1/nodes/{history.pk}/timeline?limit=200").json()["results"]
    assert seen and "audit" not in {e["source"] for e in seen}
    seen = api(auditor).get(f"/api/v1/nodes/{history.pk}/timeline?limit=200").json()["results"]
    assert "audit" in {e["source"] for e in seen}


def test_refusals(api, history):
    assert api().get(f"/api/v1/nodes/{history.pk}/timeline").status_code in (401, 403)
    nobody = make_user(None, username="nobody")
    resp = api(nobody).get(f"/api/v1/nodes/{history.pk}/timeline")
    assert resp.status_code == 403 and resp.json()["code"] == "permission_denied"
    admin = make_user("Admin")
    url = f"/api/v1/nodes/{history.pk}/timeline"
    for params in (
        {"before": "yesterday"},
        {"before": "1" * 40 + ".1.1"},
        {"before": "999999999999999999.1.1"},  # past the year 9999
        {"before": "1.1.9999999999999999999"},  # past a database id
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "many"},
        {"source": "events"},
        {"source": "x" * 5000},
    ):
        resp = api(admin).get(url, params)
        assert resp.status_code == 400, (params, resp.content)
        assert resp.json()
    assert api(admin).get("/api/v1/nodes/99999999999999999/timeline").status_code == 404
    assert api(admin).get("/api/v1/nodes/999999999999999999999/timeline").status_code == 404
    assert api(admin).post(url, {}).status_code == 405


def test_history_page_scoped_and_paged(client, history, site_b, admin):
    client.force_login(staff("Operator", sites=[site_b]))
    assert client.get(f"/admin/dashboard/nodes/{history.pk}/history/").status_code == 404
    client.force_login(admin)
    resp = client.get(f"/admin/dashboard/nodes/{history.pk}/history/")
    html = resp.content.decode()
    assert resp.status_code == 200 and 'id="pb-timeline"' in html
    assert "pb-source-boot" in html and "iPXE script: install" in html
    for before in ("nonsense", "999999999999999999.1.1", "1.1.9999999999999999999"):
        resp = client.get(f"/admin/dashboard/nodes/{history.pk}/history/?before={before}")
        assert resp.status_code == 400, before
    resp = client.get(f"/admin/dashboard/nodes/{history.pk}/history/?source=bogus")
    assert resp.status_code == 400
    assert client.get("/admin/dashboard/nodes/1234567890123456789/history/").status_code == 404


def test_node_change_page_links_to_its_history(client, history, admin):
    client.force_login(admin)
    html = client.get(f"/admin/nodes/node/{history.pk}/change/").content.decode()
    assert (
        f'id="pb-node-history" class="button" href="/admin/dashboard/nodes/{history.pk}/history/"'
        in html
    )


def test_a_page_costs_a_fixed_number_of_queries(api, history, admin):
    client = api(admin)
    url = f"/api/v1/nodes/{history.pk}/timeline?limit=5"
    client.get(url)  # warm up the user's permission caches
    with CaptureQueriesContext(connection) as few:
        next_url = client.get(url).json()["next"]
    run = WorkflowRun.objects.filter(node=history).first()
    for i in range(30):
        RunLogLine.objects.create(run=run, line=f"more {i}")
    with CaptureQueriesContext(connection) as many:
        client.get(url)
    with CaptureQueriesContext(connection) as deeper:
        client.get(next_url)
    assert len(many) == len(few) == len(deeper) <= 20, (len(few), len(many), len(deeper))
