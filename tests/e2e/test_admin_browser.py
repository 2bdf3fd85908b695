"""The operator's admin in a real browser: Chromium (Debian package) driven by Playwright.

Screenshots go to test-artifacts/admin/ for a person to look at.
"""

from __future__ import annotations

import pytest

from nodes.models import Node
from tests.e2e.browser import ARTIFACTS, login, staff_user
from tests.factories import make_node, make_workflow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_operator_assigns_a_workflow_with_the_lifecycle_buttons(browser, live_server, site_a):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    node = make_node(site=site_a, hostname="web01")
    make_workflow("ubuntu-2404-server")
    operator = staff_user("Operator", sites=[site_a])
    page = login(browser, live_server, operator.username)

    page.goto(f"{live_server.url}/admin/nodes/node/")
    assert page.locator(".pb-state-discovered").count() == 1
    page.screenshot(path=str(ARTIFACTS / "node-list.png"), full_page=True)

    page.goto(f"{live_server.url}/admin/nodes/node/{node.pk}/change/")
    form = page.locator("#pb-transition-assign")
    assert page.locator("#pb-transition-retire").count() == 1  # unused nodes: no approval
    form.locator("select[name=workflow]").select_option(label="ubuntu-2404-server")
    form.locator("input[name=reason]").fill("rack 4 build")
    form.locator("button").click()
    page.wait_for_load_state()
    assert "now Pending" in page.content()
    page.screenshot(path=str(ARTIFACTS / "node-assigned.png"), full_page=True)

    node = Node.objects.get(pk=node.pk)
    assert node.state == "pending" and node.workflow.name == "ubuntu-2404-server"
    assert page.locator("#pb-history").inner_text().count("rack 4 build") == 1


def test_admin_sees_destructive_actions_in_red(browser, live_server):
    node = make_node("active", hostname="db01")
    admin = staff_user("Admin")
    page = login(browser, live_server, admin.username)
    page.goto(f"{live_server.url}/admin/nodes/node/{node.pk}/change/")
    retire = page.locator("#pb-transition-retire button")
    assert retire.count() == 1
    colour = retire.evaluate("b => getComputedStyle(b).backgroundColor")
    assert colour == "rgb(186, 33, 33)"
    page.screenshot(path=str(ARTIFACTS / "node-active-admin.png"), full_page=True)


def test_four_eye_reprovision_in_the_browser(browser, live_server, site_a):
    """An operator asks for a reprovision, cannot approve it; an admin approves it."""
    shots = ARTIFACTS.parent / "approvals"
    shots.mkdir(parents=True, exist_ok=True)
    node = make_node("installed", hostname="db02", site=site_a)
    requester, approver = staff_user("Operator", sites=[site_a]), staff_user("Admin")

    page = login(browser, live_server, requester.username)
    page.goto(f"{live_server.url}/admin/nodes/node/{node.pk}/change/")
    form = page.locator("#pb-transition-reprovision")
    form.locator("input[name=reason]").fill("new disks in the array")
    form.locator("button").click()
    page.wait_for_load_state()
    assert "needs a second person" in page.content()
    assert Node.objects.get(pk=node.pk).state == "installed"
    link = page.locator("#pb-pending-request a")
    link.click()
    page.wait_for_load_state()
    assert "You cannot approve or reject your own request." in page.content()
    assert page.locator("#approve").count() == 0
    page.screenshot(path=str(shots / "requester-cannot-approve.png"), full_page=True)
    page.close()

    page = login(browser, live_server, approver.username)
    page.goto(f"{live_server.url}/approvals/")
    assert "db02" in page.locator("table").inner_text()
    page.screenshot(path=str(shots / "queue-awaiting-me.png"), full_page=True)
    page.locator("table a").first.click()
    page.wait_for_load_state()
    assert "installed → reprovision" in page.locator("#what").inner_text()
    page.screenshot(path=str(shots / "request-detail.png"), full_page=True)
    page.fill("#comment", "checked with the storage team")
    page.click("#approve")
    page.wait_for_load_state()
    assert "is now executed" in page.content()
    page.screenshot(path=str(shots / "request-executed.png"), full_page=True)
    assert Node.objects.get(pk=node.pk).state == "reprovision"
    page.close()
