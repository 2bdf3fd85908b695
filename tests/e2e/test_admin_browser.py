"""The operator's admin in a real browser: Chromium (Debian package) driven by Playwright.

Screenshots go to test-artifacts/admin/ for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from nodes.models import Node
from tests.factories import make_node, make_user, make_workflow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

CHROMIUM = os.environ.get("PUREBOOT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "admin"
PASSWORD = "browser-test-Pa55word"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"chromium not found at {CHROMIUM} (Debian package: chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the
    # test makes meanwhile are ordinary synchronous ones.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield instance
        instance.close()


def _login(browser, live_server, username):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    return page


def _staff(role, sites=()):
    user = make_user(role, sites=sites)
    user.is_staff = True
    user.set_password(PASSWORD)
    user.save()
    return user


def test_operator_assigns_a_workflow_with_the_lifecycle_buttons(browser, live_server, site_a):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    node = make_node(site=site_a, hostname="web01")
    make_workflow("ubuntu-2404-server")
    operator = _staff("Operator", sites=[site_a])
    page = _login(browser, live_server, operator.username)

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
    admin = _staff("Admin")
    page = _login(browser, live_server, admin.username)
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
    requester, approver = _staff("Operator", sites=[site_a]), _staff("Admin")

    page = _login(browser, live_server, requester.username)
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

    page = _login(browser, live_server, approver.username)
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
