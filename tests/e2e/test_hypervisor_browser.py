"""The hypervisor dashboard and VM actions in a real browser (Debian Chromium,
Playwright), against libvirt's real test driver. Screenshots go to
test-artifacts/hypervisors/."""

from __future__ import annotations

import libvirt
import pytest

from approvals.models import ApprovalRequest
from hypervisors import services, vms
from hypervisors.models import Hypervisor, HypervisorOperation, VirtualMachine
from nodes.models import Node
from nodes.transitions import SYSTEM, Actor
from tests.e2e.browser import ARTIFACTS, login, staff_user
from tests.hypervisors.conftest import TEST_URI, driver_state, forget_new, run_queued

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]
SHOTS = ARTIFACTS.parent / "hypervisors"


@pytest.fixture
def keep_test_driver():
    conn = libvirt.open(TEST_URI)
    before = driver_state(conn)
    yield conn
    forget_new(conn, before)
    conn.close()


def _hypervisor(site=None) -> Hypervisor:
    made = services.create_hypervisor(
        SYSTEM,
        {
            "name": "lab-kvm",
            "type": "libvirt",
            "endpoint": TEST_URI,
            "site": site,
            "options": {"storage_pool": "default-pool"},
        },
    )
    run_queued()
    return Hypervisor.objects.get(pk=made.pk)


def test_dashboard_shows_health_capacity_and_vms_and_syncs(
    browser, live_server, site_a, keep_test_driver
):
    SHOTS.mkdir(parents=True, exist_ok=True)
    hypervisor = _hypervisor(site_a)
    operator = staff_user("Operator", sites=[site_a])
    page = login(browser, live_server, operator.username)
    page.click("#pb-dashboard-links a")
    card = page.locator(f"#pb-hypervisor-{hypervisor.pk}")
    assert card.locator(".pb-health").inner_text() == "Reachable"
    assert card.locator(".pb-cpus").inner_text() == "16"  # the test driver's host
    assert "/ 3072 MiB" in card.locator(".pb-memory").inner_text()
    assert "100.0\xa0GB" in card.locator(".pb-storage").inner_text()
    running = sum(1 for d in keep_test_driver.listAllDomains() if d.isActive())
    stopped = len(keep_test_driver.listAllDomains()) - running
    assert card.locator(".pb-vms").inner_text().startswith(f"{running} running")
    assert "create_vm" in card.locator(".pb-caps").inner_text()
    assert "live_migrate" not in card.locator(".pb-caps").inner_text()
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)
    card.locator(".pb-vms a").click()
    page.wait_for_load_state()
    assert "?e=" not in page.url and page.locator("#result_list tbody tr").count() == 1
    page.go_back()
    card = page.locator(f"#pb-hypervisor-{hypervisor.pk}")

    # A VM defined outside PureBoot appears after "Sync now".
    keep_test_driver.defineXML(
        "<domain type='test'><name>outside-1</name><memory>65536</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    before = HypervisorOperation.objects.count()
    card.locator(".pb-sync button").click()
    page.wait_for_load_state()
    assert HypervisorOperation.objects.count() == before + 1
    # SQLite mode ran it in the request; with Redis it waits for a worker: run it.
    run_queued()
    page.reload()
    card = page.locator(f"#pb-hypervisor-{hypervisor.pk}")
    assert f"{stopped + 1} stopped" in card.locator(".pb-vms").inner_text()
    assert VirtualMachine.objects.filter(name="outside-1", managed=False).exists()
    keep_test_driver.lookupByName("outside-1").undefine()

    # A User (read-only) sees the card without the sync button.
    user = staff_user("User", sites=[site_a])
    page = login(browser, live_server, user.username)
    page.goto(f"{live_server.url}/admin/hypervisors/hypervisor/dashboard/")
    assert page.locator(f"#pb-hypervisor-{hypervisor.pk}").count() == 1
    assert page.locator(".pb-sync").count() == 0
    # An operator of another site sees nothing.
    stranger = staff_user("Operator")
    page = login(browser, live_server, stranger.username)
    page.goto(f"{live_server.url}/admin/hypervisors/hypervisor/dashboard/")
    assert page.locator(".pb-card").count() == 0


def test_vm_power_off_of_an_active_node_asks_a_second_person(
    browser, live_server, site_a, keep_test_driver
):
    SHOTS.mkdir(parents=True, exist_ok=True)
    hypervisor = _hypervisor(site_a)
    operator = staff_user("Operator", sites=[site_a])
    vm = vms.create(
        hypervisor.pk,
        Actor.of(operator),
        vms.Request(
            name="app-01",
            cpus=1,
            memory_mib=512,
            disks=[{"size_bytes": 1 << 30, "storage": "default-pool"}],
            networks=[{"network": "default"}],
        ),
    )
    run_queued()
    vm.refresh_from_db()
    Node.objects.filter(pk=vm.node_id).update(state="active")
    page = login(browser, live_server, operator.username)
    page.goto(f"{live_server.url}/admin/hypervisors/virtualmachine/{vm.pk}/change/")
    form = page.locator("#pb-vm-power-off")
    form.locator("input[name=reason]").fill("move rack")
    form.locator("button").click()
    page.wait_for_load_state()
    assert "needs a second person" in page.content()
    page.screenshot(path=str(SHOTS / "vm-power-off-asked.png"), full_page=True)
    assert keep_test_driver.lookupByUUIDString(vm.platform_id).isActive()
    assert ApprovalRequest.objects.filter(action="vm.power_off", status="pending").count() == 1
