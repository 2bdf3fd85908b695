"""The dashboard page and its live fragments: what each role sees, where, and which actions."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals import services as approvals
from hypervisors.models import Hypervisor
from nodes import services as node_services
from nodes.models import Node
from tests.factories import make_node, make_user
from workflows import services as workflow_services

from .conftest import installing_node, staff

pytestmark = pytest.mark.django_db

PANELS = ("fleet", "installs", "boots", "approvals", "hypervisors", "failures")


def _page(client) -> str:
    resp = client.get("/admin/dashboard/")
    assert resp.status_code == 200
    return resp.content.decode()


def _fragments(client) -> dict[str, str]:
    out = {}
    for name in PANELS:
        resp = client.get(f"/admin/dashboard/panel/{name}/")
        assert resp.status_code == 200, name
        assert "no-cache" in resp["Cache-Control"]
        out[name] = resp.content.decode()
    return out


@pytest.mark.parametrize(
    "url",
    ["/admin/dashboard/", "/admin/dashboard/panel/fleet/", "/admin/dashboard/nodes/1/history/"],
)
def test_anonymous_is_sent_to_sign_in(client, url):
    resp = client.get(url)
    assert resp.status_code == 302
    assert resp["Location"].startswith("/admin/login/?next=")


def test_a_user_without_a_role_is_refused(client):
    user = make_user(None, username="norole")
    user.is_staff = True
    user.save()
    client.force_login(user)
    assert client.get("/admin/dashboard/").status_code == 403
    assert client.get("/admin/dashboard/panel/fleet/").status_code == 403


def test_operator_sees_only_granted_sites_on_page_and_in_every_fragment(
    client, site_a, site_b, admin, operator_a
):
    installing_node(site_a, "inst-a", admin, logs=("copying base system",))
    installing_node(site_b, "inst-b", admin, logs=("secret-b log line",))
    make_node("failed", site=site_b, hostname="broken-b")
    make_node("pending", site=site_a, hostname="pend-a")
    Hypervisor.objects.create(name="hv-a", type="libvirt", endpoint="qemu:///a", site=site_a)
    Hypervisor.objects.create(name="hv-b", type="libvirt", endpoint="qemu:///b", site=site_b)

    client.force_login(operator_a)
    html = _page(client)
    assert "inst-a" in html and "copying base system" in html and "hv-a" in html
    assert "Site A" in html and "the sites granted to you" in html
    for text in ("inst-b", "secret-b", "broken-b", "hv-b", "Site B"):
        assert text not in html, text
    for name, fragment in _fragments(client).items():
        for text in ("inst-b", "secret-b", "broken-b", "hv-b", "Site B"):
            assert text not in fragment, (name, text)

    client.force_login(admin)
    html = _page(client)
    for text in ("inst-a", "inst-b", "broken-b", "hv-a", "hv-b", "Site B", "all sites"):
        assert text in html, text


def test_fleet_counts_by_state_and_site(client, site_a, site_b, admin):
    for i in range(3):
        make_node("active", site=site_a, hostname=f"act-{i}")
    make_node("failed", site=site_b, hostname="f1")
    make_node("discovered", hostname="nosite")
    client.force_login(admin)
    fleet = _fragments(client)["fleet"]
    link = f"/admin/nodes/node/?state=active&amp;site__id__exact={site_a.pk}"
    assert f'data-state="active"><a href="{link}">3</a>' in fleet
    assert "(no site)" in fleet
    assert '<span class="pb-total">5</span>' in fleet


def test_installs_show_step_progress_and_the_log_tail(client, site_a, admin):
    logs = [f"l{i}" for i in range(8)]
    node, run = installing_node(site_a, "web07", admin, progress=45, logs=logs)
    client.force_login(admin)
    installs = _fragments(client)["installs"]
    assert f'id="pb-install-{node.pk}"' in installs
    assert "1/1 pxe_boot" in installs and "45%" in installs
    # the last five lines, oldest first
    assert "l3\nl4\nl5\nl6\nl7" in installs and "l2" not in installs


def test_recent_boots_from_the_real_boot_path_scoped_by_site(client, site_a, site_b, admin):
    make_node("pending", site=site_a, hostname="boot-a", macs=["52:54:00:0a:00:01"])
    moved = make_node("discovered", site=site_a, hostname="moved-b", macs=["52:54:00:0a:00:02"])
    make_node("pending", site=site_b, hostname="boot-b", macs=["52:54:00:0b:00:01"])
    for mac in ("52:54:00:0a:00:01", "52:54:00:0a:00:02", "52:54:00:0b:00:01"):
        assert client.get("/boot/ipxe", {"mac": mac}).status_code == 200
    Node.objects.filter(pk=moved.pk).update(site=site_b)  # moved after it booted

    client.force_login(staff("Operator", sites=[site_a]))
    boots = _fragments(client)["boots"]
    assert "boot-a" in boots and "52:54:00:0a:00:01" not in boots  # named by its node
    assert 'data-protocol="http"' in boots and "/boot/ipxe" in boots
    # The moved node's record happened at site A; its name (now site B's) is not shown.
    assert "moved-b" not in boots and "52:54:00:0a:00:02" in boots
    assert "boot-b" not in boots and "52:54:00:0b:00:01" not in boots

    client.force_login(admin)
    boots = _fragments(client)["boots"]
    assert "boot-a" in boots and "boot-b" in boots and "moved-b" in boots


def test_auditor_sees_everything_but_gets_no_action(client, site_a, site_b, admin, auditor):
    make_node("failed", site=site_b, hostname="broken-b")
    node = make_node("installed", site=site_a, hostname="db01")
    requester = staff("Operator", sites=[site_a])
    with pytest.raises(node_services.ApprovalRequired) as exc:
        node_services.perform(node.pk, "reprovision", node_services.Actor.of(requester))
    approvals.file(exc.value.proposal, requester)

    client.force_login(auditor)
    html = _page(client)
    assert "broken-b" in html  # every site's failures
    assert f'?state=installed&amp;site__id__exact={site_a.pk}">1</a>' in html
    assert "pb-action" not in html
    assert "Nothing awaits your decision." in html

    client.force_login(admin)
    html = _page(client)
    assert 'class="pb-action button" href="/admin/nodes/node/add/"' in html
    assert "Reassign or reprovision" in html


def test_pending_approvals_for_the_viewer_not_their_own(client, site_a, site_b):
    node = make_node("installed", site=site_a, hostname="db01")
    requester = staff("Operator", sites=[site_a])
    colleague = staff("Operator", sites=[site_a])
    elsewhere = staff("Operator", sites=[site_b])
    with pytest.raises(node_services.ApprovalRequired) as exc:
        node_services.perform(node.pk, "reprovision", node_services.Actor.of(requester))
    filed = approvals.file(exc.value.proposal, requester)

    client.force_login(colleague)
    html = _fragments(client)["approvals"]
    assert f'href="/approvals/{filed.pk}/">Decide</a>' in html and "db01" in html
    client.force_login(requester)
    assert "Nothing awaits your decision." in _fragments(client)["approvals"]
    client.force_login(elsewhere)
    assert "db01" not in _page(client)


def test_failures_name_their_reason(client, site_a, admin):
    node, run = installing_node(site_a, "web09", admin)
    report = {"status": "failed", "logs": ["disk /dev/sda not found"]}
    workflow_services.handle_report(run.pk, report)
    client.force_login(admin)
    failures = _fragments(client)["failures"]
    assert f'id="pb-failed-{node.pk}"' in failures
    assert "disk /dev/sda not found" in failures
    assert f'id="pb-failed-run-{run.pk}"' in failures


def test_unknown_panel_and_writes_are_refused(client, admin):
    client.force_login(admin)
    assert client.get("/admin/dashboard/panel/nope/").status_code == 404
    assert client.get("/admin/dashboard/panel/" + "x" * 5000 + "/").status_code == 404
    assert client.post("/admin/dashboard/panel/fleet/").status_code == 405
    assert client.post("/admin/dashboard/").status_code == 405


def test_links_from_the_admin_index_and_header(client, admin):
    client.force_login(admin)
    html = client.get("/admin/").content.decode()
    assert 'id="pb-header-dashboard" href="/admin/dashboard/"' in html
    assert '<p id="pb-index-dashboard"><a href="/admin/dashboard/">' in html


def _count(client, url) -> int:
    client.get(url)  # warm up the user's permission caches
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("role", ["Admin", "Operator"])
def test_query_count_does_not_grow_with_the_fleet(client, site_a, admin, role):
    viewer = staff(role, sites=[site_a])
    client.force_login(viewer)
    installing_node(site_a, "i0", admin)
    make_node("failed", site=site_a, hostname="f0")
    few = _count(client, "/admin/dashboard/")
    for i in range(1, 6):
        installing_node(site_a, f"i{i}", admin, logs=[f"line {j}" for j in range(10)])
        make_node("failed", site=site_a, hostname=f"f{i}")
        make_node("active", site=site_a, hostname=f"a{i}")
    many = _count(client, "/admin/dashboard/")
    assert many == few, (few, many)
    assert many <= 30


def test_hypervisor_health_with_last_error(client, site_a, admin):
    Hypervisor.objects.create(name="hv-ok", type="libvirt", endpoint="qemu:///ok", health="ok")
    down = Hypervisor.objects.create(
        name="hv-down",
        type="proxmox",
        endpoint="https://pve.example:8006",
        site=site_a,
        health="unreachable",
        last_error="connection refused by pve.example:8006",
    )
    client.force_login(admin)
    panel = _fragments(client)["hypervisors"]
    assert "1 unreachable or refused" in panel
    assert f'id="pb-hv-{down.pk}"' in panel and "connection refused by pve.example" in panel
    assert "Unreachable (will retry)" in panel and "Reachable" in panel
