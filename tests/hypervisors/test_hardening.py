"""One test per class of defect found attacking the hypervisors app: requests
seen across sites, a hostile hypervisor's listing, retried and racing
operations, moved endpoints, and input that must be a 400, not a 500."""

from __future__ import annotations

import pytest

from approvals import services as approvals
from hypervisors import operations, services, sync, vms
from hypervisors.choices import OperationStatus, VMStatus
from hypervisors.drivers import base
from hypervisors.models import Hypervisor, HypervisorOperation, VirtualMachine
from nodes import services as node_services
from nodes.models import Node
from nodes.transitions import SYSTEM, Actor
from pureboot import gate
from tests.factories import make_node, make_user, make_workflow

from .conftest import TEST_URI, run_queued
from .test_api import VM_WORKFLOW

pytestmark = pytest.mark.django_db


def _hv(name="lv", site=None, **options) -> Hypervisor:
    made = services.create_hypervisor(
        SYSTEM,
        {"name": name, "type": "libvirt", "endpoint": TEST_URI, "site": site,
         "options": {"storage_pool": "default-pool", **options}},
    )  # fmt: skip
    run_queued()
    return made


def _request(name, **kw):
    fields = {"name": name, "cpus": 1, "memory_mib": 256,
              "disks": [{"size_bytes": 1 << 30}], "networks": [{"network": "default"}]}  # fmt: skip
    fields.update(kw)
    return vms.Request(**fields)


def test_vm_and_hypervisor_requests_are_seen_only_by_their_sites_people(site_a):
    from tests.factories import SiteFactory

    site_b = SiteFactory(name="B", slug="b")
    hv = _hv(site=site_a)
    alice = make_user("Operator", sites=[site_a])
    vm = vms.create(hv.pk, Actor.of(alice), _request("sec-1"))
    run_queued()
    with pytest.raises(gate.ApprovalRequired) as asked:
        vms.delete(vm.pk, Actor.of(alice), reason="secret project X")
    request = approvals.file(asked.value.proposal, alice)
    outsider = make_user("Operator", sites=[site_b])
    assert not approvals.visible_requests(outsider).filter(pk=request.pk).exists()
    insider = make_user("Operator", sites=[site_a])
    assert approvals.visible_requests(insider).filter(pk=request.pk).exists()
    with pytest.raises(approvals.NotAllowed):
        approvals.approve(request.pk, outsider)


def test_a_hostile_listing_neither_wedges_sync_nor_hands_over_a_node(db):
    hv = _hv()
    victim = make_node("active", macs=["52:54:00:de:ad:01"])
    listing = base.Inventory(
        vms=(
            base.VM(id="x" * 5000, name="long-id"),
            base.VM(id="", name="no-id"),
            base.VM(id="dup", name="a", cpus=-5, memory_mib=10**30, macs=("not-a-mac",)),
            base.VM(id="dup", name="b"),
            base.VM(id="claims-victim", name="n" * 1000, macs=("52:54:00:DE:AD:01",)),
        ),
        templates=(base.Template(id="t" * 900, name="long"), base.Template(id="t1", name="ok")),
        networks=("n" * 5000,),
    )
    for _ in range(2):  # and again: nothing recorded half-way breaks the next sync
        result = sync.apply(hv, base.Health(ok=True, version="v" * 900), listing)
    assert result["vms_skipped"] == 3 and result["templates_skipped"] == 1
    dup = VirtualMachine.objects.get(hypervisor=hv, platform_id="dup")
    assert dup.cpus == 0 and dup.memory_mib == 2**31 - 1 and dup.macs == []
    claimed = VirtualMachine.objects.get(hypervisor=hv, platform_id="claims-victim")
    assert claimed.node_id is None and len(claimed.name) == 200
    assert not hasattr(Node.objects.get(pk=victim.pk), "vm")
    assert len(Hypervisor.objects.get(pk=hv.pk).inventory["networks"][0]) == 200


def test_a_create_retried_after_a_transient_failure_does_not_make_a_second_vm(db):
    import libvirt

    hv = _hv()
    vm = vms.create(hv.pk, Actor.of(make_user("Admin")), _request("once-1"))
    run_queued()
    conn = libvirt.open(TEST_URI)
    before = len(conn.listAllDomains())
    op = HypervisorOperation.objects.get(vm=vm, kind="create")
    # As if its power-on had failed transiently after the VM was made.
    HypervisorOperation.objects.filter(pk=op.pk).update(status=OperationStatus.RETRYING)
    assert operations.run(op.pk) == OperationStatus.SUCCEEDED
    assert len(conn.listAllDomains()) == before
    assert VirtualMachine.objects.get(pk=vm.pk).status == VMStatus.PRESENT


def test_a_sync_while_a_vm_is_being_created_does_not_record_it_twice(db):
    hv = _hv()
    vm = vms.create(hv.pk, Actor.of(make_user("Admin")), _request("race-1"))
    # The platform already lists the VM, but its create has not recorded the id yet.
    listing = base.Inventory(vms=(base.VM(id="new-uuid", name="race-1", macs=tuple(vm.macs)),))
    sync.apply(hv, base.Health(ok=True), listing)
    assert not VirtualMachine.objects.filter(platform_id="new-uuid").exists()
    assert VirtualMachine.objects.get(pk=vm.pk).status == VMStatus.CREATING


def test_an_operation_never_runs_against_an_endpoint_it_was_not_asked_for(db):
    hv = _hv()
    op = services.request_sync(hv.pk, SYSTEM)
    Hypervisor.objects.filter(pk=hv.pk).update(endpoint="test:///elsewhere")
    assert operations.run(op.pk) == OperationStatus.FAILED
    op.refresh_from_db()
    assert "endpoint changed since this was asked" in op.error


def test_a_workflow_that_creates_a_vm_is_not_assigned_to_a_machine_without_one(db):
    workflow = make_workflow("vm-wf", VM_WORKFLOW.format(name="vm-wf"))
    node = make_node("discovered")
    with pytest.raises(Exception) as refused:
        node_services.perform(node.pk, "assign", SYSTEM, workflow=workflow)
    assert "creates the node's VM" in str(refused.value)
    assert Node.objects.get(pk=node.pk).state == "discovered"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/hypervisors", {"options": ["template_pool"]}, "options"),
        ("/api/v1/hypervisors", {"options": 5}, "options"),
        ("vms", {"disks": [{"size": "9" * 400 + "GiB"}]}, "disks"),
        ("vms", {"networks": [{"network": ""}]}, "networks"),
        ("vms", {"networks": [{"network": "bridge:br-mgmt"}]}, "networks[0].network"),
        ("vms", {"cluster": "Default"}, "cluster"),
        ("vms", {"disks": [{"size": "1GiB", "interface": "sata"}]}, "disk_interface"),
    ],
)
def test_odd_input_is_a_400_naming_the_field(api, db, path, body, field):
    client = api(make_user("Admin"))
    if path == "vms":
        hv = _hv(name="odd")
        path = f"/api/v1/hypervisors/{hv.pk}/vms"
        body = {"name": "odd-1", "cpus": 1, "memory_mib": 256, "disks": [{"size": "1GiB"}],
                "networks": [{"network": "default"}], **body}  # fmt: skip
    else:
        body = {"name": "odd", "type": "libvirt", "endpoint": TEST_URI, **body}
    answer = client.post(path, body, format="json")
    assert answer.status_code == 400, answer.content
    assert any(field in k for k in answer.data), answer.data
    assert not Node.objects.filter(hostname="odd-1").exists()
