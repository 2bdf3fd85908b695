"""The dashboard in a real browser (Debian Chromium, Playwright): a node's install
is seen moving from pending to installing to installed without a reload.

The test moves the node through the real paths: the lifecycle service assigns
it, the machine's own boot request (``GET /boot/ipxe?mac=...`` over HTTP to the
live server) starts the install, and the installer's own report endpoint
(``POST /api/v1/report`` with the node token, over HTTP to the live server)
reports progress and completion. A marker set on ``window``
by the test must survive: the page was never reloaded. The screenshot goes to
test-artifacts/admin/dashboard.png; with PUREBOOT_UPDATE_SCREENSHOTS=1 it also
replaces docs/images/dashboard.png, the README's picture.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from nodes import services as node_services
from tests.e2e.browser import ARTIFACTS, login, staff_user
from tests.factories import make_node, make_workflow
from workflows import services as workflow_services
from workflows.models import WorkflowRun

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"
WAIT_MS = 15_000  # a few refresh periods
MAC = "52:54:00:12:34:56"


def _report(live_server, token: str, **body) -> dict:
    request = urllib.request.Request(
        f"{live_server.url}/api/v1/report",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Node {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - the test server
        assert answer.status == 200
        return json.load(answer)


def test_an_install_moves_from_pending_to_installed_without_a_reload(browser, live_server, site_a):
    admin = staff_user("Admin")
    make_node("active", site=site_a, hostname="db01")
    # An earlier install that failed, through the same paths (its reason is shown).
    old = make_node(site=site_a, hostname="old-build")
    node_services.perform(
        old.pk, "assign", node_services.Actor.of(admin), workflow=make_workflow("rocky-9")
    )
    _, old_run, _ = workflow_services.start_install(old.pk)
    workflow_services.handle_report(
        old_run.pk, {"status": "failed", "logs": ["no disk matches the rule: largest"]}
    )
    node = make_node(site=site_a, hostname="web01", macs=[MAC])
    node_services.perform(
        node.pk,
        "assign",
        node_services.Actor.of(admin),
        workflow=make_workflow("ubuntu-2404"),
        reason="rack 4",
    )

    page = login(browser, live_server, admin.username)
    navigations = []
    page.goto(f"{live_server.url}/admin/")
    page.click("#pb-header-dashboard")
    page.wait_for_url(f"{live_server.url}/admin/dashboard/")
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.evaluate("window.pbMarker = 'still here'")

    site_row = page.locator(f'#pb-panel-fleet tr[data-site="{site_a.pk}"]')
    svg = page.locator("#pb-lifecycle-svg")
    expect(site_row.locator("td.pb-count-pending")).to_have_text("1")
    expect(svg.locator('[data-state="pending"] .pb-count')).to_have_text("1")
    expect(page.locator("#pb-panel-installs")).to_contain_text("No install is running.")
    expect(page.locator(f"#pb-failed-{old.pk}")).to_contain_text("no disk matches the rule")

    # The machine network-boots: the boot path starts its install and hands its
    # installer the node token (the same signed token every time for one run).
    with urllib.request.urlopen(f"{live_server.url}/boot/ipxe?mac={MAC}", timeout=10) as boot:
        assert boot.status == 200 and "#!ipxe" in boot.read().decode()
    run = WorkflowRun.objects.get(node=node, status="running")
    token = workflow_services.issue_token(run)
    expect(page.locator("#pb-panel-boots")).to_contain_text("web01", timeout=WAIT_MS)
    _report(
        live_server,
        token,
        status="installing",
        progress=40,
        step=0,
        logs=["unpacking the base system"],
    )
    install = page.locator(f"#pb-install-{node.pk}")
    expect(install).to_contain_text("unpacking the base system", timeout=WAIT_MS)
    expect(install.locator(".pb-progress-text")).to_have_text("40%")
    expect(install.locator(".pb-step")).to_have_text("1/1 pxe_boot")
    expect(site_row.locator("td.pb-count-installing")).to_have_text("1")
    expect(svg.locator('[data-state="installing"] .pb-count')).to_have_text("1")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    if os.environ.get("PUREBOOT_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(ARTIFACTS / "dashboard.png", README_SCREENSHOT)

    _report(live_server, token, status="installed", progress=100, logs=["installed"])
    expect(site_row.locator("td.pb-count-installed")).to_have_text("1", timeout=WAIT_MS)
    expect(svg.locator('[data-state="installed"] .pb-count')).to_have_text("1")
    expect(site_row.locator("td.pb-count-pending")).to_have_text("0")
    expect(page.locator("#pb-panel-installs")).to_contain_text("No install is running.")

    assert page.evaluate("window.pbMarker") == "still here"
    assert navigations == []
    assert page.url == f"{live_server.url}/admin/dashboard/"

    # The node's history page, reached from its admin page, tells the same story.
    page.goto(f"{live_server.url}/admin/nodes/node/{node.pk}/change/")
    page.click("#pb-node-history")
    timeline = page.locator("#pb-timeline")
    expect(timeline).to_contain_text("installing → installed")
    expect(timeline).to_contain_text("unpacking the base system")
    expect(timeline).to_contain_text("Install succeeded")
    text = timeline.inner_text()
    assert text.index("Install succeeded") < text.index("Install started")
    page.close()  # before the live server stops: no refresh left in flight
