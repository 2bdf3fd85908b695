"""Hypervisor services end to end against libvirt's real test driver
(``test:///default``): registering, syncing, VM creation for a node,
power, four-eye deletion and power-off, vanished VMs, retries."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt
import pytest
from django.core.exceptions import ValidationError

from approvals import services as approvals
from approvals.models import ApprovalRequest
from hypervisors import operations, services, vms
from hypervisors.choices import Health, OperationStatus, VMStatus
from hypervisors.models import Hypervisor, HypervisorOperation, VirtualMachine
from nodes.choices import EventKind
from nodes.models import Node
from nodes.transitions import SYSTEM, Actor, TransitionForbidden
from pureboot import gate
from tests.factories import make_user
from tests.hypervisors.fakes.common import make_tls

from .conftest import TEST_URI, run_queued

pytestmark = pytest.mark.django_db


def _domain(vm: VirtualMachine):
    return libvirt.open(TEST_URI).lookupByUUIDString(vm.platform_id)


def _request(name: str, **kw) -> vms.Request:
    fields = {
        "name": name,
        "cpus": 2,
        "memory_mib": 1024,
        "disks": [{"size_bytes": 2 << 30}],
        "networks": [{"network": "default"}],
    }
    fields.update(kw)
    return vms.Request(**fields)


def test_sync_records_inventory_templates_and_vms(libvirt_hypervisor, template_volume):
    (op,) = run_queued()
    assert op.status == OperationStatus.SUCCEEDED, op.error
    hv = Hypervisor.objects.get(pk=libvirt_hypervisor.pk)
    assert hv.health == Health.OK and hv.version.startswith("TEST")
    assert hv.inventory["networks"] == ["default"]
    assert hv.inventory["storage"][0]["name"] == "default-pool"
    assert hv.templates.filter(name=template_volume, present=True).exists()
    # The test driver's own domain "test" is recorded, unmanaged.
    found = hv.vms.get(name="test")
    assert not found.managed and found.power == "running"


def test_create_vm_registers_mac_first_then_creates_network_boot_first(
    libvirt_hypervisor, template_volume
):
    run_queued()
    admin = make_user("Admin")
    vm = vms.create(
        libvirt_hypervisor.pk, Actor.of(admin), _request("web-a1", template=template_volume)
    )
    # Before any call to the hypervisor, the node exists with the VM's MAC.
    node = Node.objects.get(pk=vm.node_id)
    assert node.interfaces.get().mac == vm.macs[0]
    assert vm.status == VMStatus.CREATING and vm.platform_id == ""
    (op,) = run_queued()
    assert op.status == OperationStatus.SUCCEEDED, op.error
    vm.refresh_from_db()
    assert vm.status == VMStatus.PRESENT and vm.power == "running"
    xml = ET.fromstring(_domain(vm).XMLDesc(0))
    nic = xml.find("./devices/interface")
    assert nic.find("mac").get("address") == vm.macs[0]
    assert nic.find("boot").get("order") == "1"
    disks = xml.findall("./devices/disk")
    assert [d.find("source").get("volume") for d in disks] == [
        "web-a1-disk0.qcow2",
        "web-a1-disk1.qcow2",
    ]
    assert disks[0].find("boot").get("order") == "2"
    assert node.events.filter(kind=EventKind.HYPERVISOR).count() >= 2


def test_create_refuses_what_the_hypervisor_lacks(libvirt_hypervisor):
    run_queued()
    admin = Actor.of(make_user("Admin"))
    with pytest.raises(ValidationError) as missing:
        vms.create(libvirt_hypervisor.pk, admin, _request("x1", template="no-such-template"))
    assert "no template 'no-such-template'" in str(missing.value)
    with pytest.raises(ValidationError) as network:
        vms.create(libvirt_hypervisor.pk, admin, _request("x2", networks=[{"network": "nope"}]))
    assert "no network 'nope'" in str(network.value)
    with pytest.raises(ValidationError):
        vms.create(libvirt_hypervisor.pk, admin, _request("x3", ha=True))
    assert not Node.objects.filter(hostname__in=["x1", "x2", "x3"]).exists()


def test_user_role_cannot_create_vms(libvirt_hypervisor):
    with pytest.raises(TransitionForbidden):
        vms.create(libvirt_hypervisor.pk, Actor.of(make_user("User")), _request("u1"))


def test_capability_missing_names_driver_and_capability(libvirt_hypervisor):
    run_queued()
    vm = vms.create(libvirt_hypervisor.pk, Actor.of(make_user("Admin")), _request("mig-1"))
    run_queued()
    with pytest.raises(services.CapabilityMissing) as refused:
        vms.migrate(vm.pk, Actor.of(make_user("Admin")), "other-host")
    assert "KVM/libvirt" in str(refused.value) and "live_migrate" in str(refused.value)


def test_power_off_of_an_active_vm_and_delete_need_a_second_person(libvirt_hypervisor):
    run_queued()
    alice, bob = make_user("Operator"), make_user("Operator")
    alice.is_superuser = False
    # Operators see only their sites; this hypervisor has none: use all-sites holders.
    alice, bob = make_user("Admin"), make_user("Admin")
    vm = vms.create(libvirt_hypervisor.pk, Actor.of(alice), _request("db-1"))
    run_queued()
    vm.refresh_from_db()
    Node.objects.filter(pk=vm.node_id).update(state="active")
    with pytest.raises(gate.ApprovalRequired) as asked:
        vms.power(vm.pk, Actor.of(alice), "off", reason="maintenance")
    assert _domain(vm).isActive()
    request = approvals.file(asked.value.proposal, alice)
    # What the approver reads: the VM, its node and state, and what is lost.
    assert request.what.startswith(f"Power off VM db-1 (node db-1 #{vm.node_id}, active)")
    assert "hard power-off" in request.what
    with pytest.raises(approvals.NotAllowed):
        approvals.approve(request.pk, alice)  # not by the requester
    approvals.approve(request.pk, bob)
    assert ApprovalRequest.objects.get(pk=request.pk).status == "executed"
    run_queued()
    assert not _domain(vm).isActive()

    platform_id = vm.platform_id
    with pytest.raises(gate.ApprovalRequired) as asked:
        vms.delete(vm.pk, Actor.of(alice), reason="decommission")
    request = approvals.file(asked.value.proposal, alice)
    assert (
        request.what.startswith("Delete VM db-1") and "everything on them is lost" in request.what
    )
    approvals.approve(request.pk, bob)
    run_queued()
    vm.refresh_from_db()
    assert vm.status == VMStatus.DELETED
    # The machine is gone: its node is retired with it, saying why.
    node = Node.objects.get(pk=vm.node_id)
    assert node.state == "retired"
    assert node.events.filter(to_state="retired", message__contains="its VM was deleted").exists()
    with pytest.raises(libvirt.libvirtError):
        libvirt.open(TEST_URI).lookupByUUIDString(platform_id)
    pool = libvirt.open(TEST_URI).storagePoolLookupByName("default-pool")
    assert "db-1-disk0.qcow2" not in pool.listVolumes()


def test_approval_is_void_when_the_vm_changed(libvirt_hypervisor):
    run_queued()
    alice, bob = make_user("Admin"), make_user("Admin")
    vm = vms.create(libvirt_hypervisor.pk, Actor.of(alice), _request("db-2"))
    run_queued()
    with pytest.raises(gate.ApprovalRequired) as asked:
        vms.delete(vm.pk, Actor.of(alice))
    request = approvals.file(asked.value.proposal, alice)
    # Meanwhile the VM is relinked to another endpoint: the approval must not apply.
    Hypervisor.objects.filter(pk=libvirt_hypervisor.pk).update(endpoint="test:///other")
    approvals.approve(request.pk, bob)
    assert ApprovalRequest.objects.get(pk=request.pk).status != "executed"
    assert VirtualMachine.objects.get(pk=vm.pk).status == VMStatus.PRESENT


def test_vm_deleted_outside_pureboot_is_marked_vanished(libvirt_hypervisor):
    run_queued()
    vm = vms.create(libvirt_hypervisor.pk, Actor.of(make_user("Admin")), _request("gone-1"))
    run_queued()
    vm.refresh_from_db()
    domain = _domain(vm)
    domain.destroy()
    domain.undefine()
    services.request_sync(libvirt_hypervisor.pk, SYSTEM)
    run_queued()
    vm.refresh_from_db()
    assert vm.status == VMStatus.VANISHED
    assert VirtualMachine.objects.filter(pk=vm.pk).exists()
    assert vm.node.events.filter(message__contains="vanished").exists()


def test_unreachable_hypervisor_retries_with_backoff_then_fails(db, settings):
    settings.PUREBOOT_HYPERVISOR_TIMEOUT = 5
    settings.PUREBOOT_HYPERVISOR_MAX_ATTEMPTS = 2
    hv = services.create_hypervisor(
        SYSTEM, {"name": "dead", "type": "libvirt", "endpoint": "qemu+tcp://127.0.0.1:9/system"}
    )
    (op,) = run_queued()
    assert op.status == OperationStatus.RETRYING and op.error_code == "hypervisor_unavailable"
    assert Hypervisor.objects.get(pk=hv.pk).health == Health.UNREACHABLE
    assert operations.retry_due() == []  # backoff not elapsed
    HypervisorOperation.objects.filter(pk=op.pk).update(
        started_at=op.started_at - operations.backoff(1)
    )
    assert operations.retry_due() == [op.pk]
    operations.run(op.pk)
    op.refresh_from_db()
    assert op.status == OperationStatus.FAILED and op.attempts == 2
    assert "127.0.0.1:9" in op.error


def test_unknown_option_is_refused(db):
    with pytest.raises(ValidationError) as refused:
        services.create_hypervisor(
            SYSTEM,
            {"name": "bad", "type": "libvirt", "endpoint": TEST_URI, "options": {"colour": "x"}},
        )
    assert "colour" in str(refused.value)


def _credential(name: str, scope: str, password: str = "pw-Zq8-never-shown"):
    from credentials import services as credentials
    from tests.factories import sealed

    return credentials.create_credential(
        "user:setup",
        {"name": name, "kind": "hypervisor", "username": "root@pam", "scope": scope},
        {"password": password},
        approval=sealed("credential.create", f"credential:new:{name}", ""),
    )


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://evil.example:8006",
        "https://pve.lab.example.evil.net:8006",  # a longer host that starts the same
        "https://pve.lab.example:8006@evil.net/",  # userinfo, then the real host
        "https://pve.lab.example:9006",
        "http://pve.lab.example:8006",
        "https://pve.lab.example:8006x",
    ],
)
def test_a_credential_goes_only_where_its_scope_says(db, settings, endpoint):
    from cryptography.fernet import Fernet

    settings.PUREBOOT_FERNET_KEYS = [Fernet.generate_key().decode()]
    scoped = _credential("pve-lab", "https://pve.lab.example:8006")
    with pytest.raises(ValidationError):
        services.create_hypervisor(
            SYSTEM, {"name": "pve", "type": "proxmox", "credential": scoped, "endpoint": endpoint}
        )
    assert not Hypervisor.objects.exists()


def test_a_credential_without_scope_or_with_tls_off_is_refused_and_moves_are_four_eye(
    db, settings, tmp_path
):
    from cryptography.fernet import Fernet

    settings.PUREBOOT_FERNET_KEYS = [Fernet.generate_key().decode()]
    scoped = _credential("pve-lab", "https://pve.lab.example:8006/api2")
    unscoped = _credential("loose", "")
    fields = {"name": "pve", "type": "proxmox", "credential": scoped}
    with pytest.raises(ValidationError) as loose:
        services.create_hypervisor(
            SYSTEM, {**fields, "credential": unscoped, "endpoint": "https://pve.lab.example:8006"}
        )
    assert "has no scope" in str(loose.value)
    with pytest.raises(ValidationError) as insecure:
        services.create_hypervisor(
            SYSTEM,
            {**fields, "endpoint": "https://pve.lab.example:8006/api2", "verify_tls": False},
        )
    assert "verify_tls" in insecure.value.message_dict
    made = services.create_hypervisor(
        SYSTEM, {**fields, "endpoint": "https://pve.lab.example:8006/api2/json"}
    )
    admin = Actor.of(make_user("Admin"))
    # Where a credentialed hypervisor's secret goes is a second person's call too.
    with pytest.raises(gate.ApprovalRequired) as asked:
        services.update_hypervisor(made.pk, admin, {"ca_certificate": make_tls(tmp_path).ca_pem})
    assert Hypervisor.objects.get(pk=made.pk).ca_certificate == ""
    assert asked.value.proposal.action == "hypervisor.change_connection"
    # ...and not even an approval sends it outside the credential's scope.
    with pytest.raises(ValidationError):
        services.update_hypervisor(made.pk, admin, {"endpoint": "https://evil.example/"})
    # What is not about the connection is the admin's own call.
    services.update_hypervisor(made.pk, admin, {"sync_interval_minutes": 5})
    assert Hypervisor.objects.get(pk=made.pk).sync_interval_minutes == 5


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("endpoint", "https://root:secret@pve.example:8006", "not in the endpoint"),
        ("endpoint", "no scheme here", "No spaces"),
        ("endpoint", "pve.example", "A URL"),
        ("ca_certificate", "-----BEGIN CERTIFICATE-----\nnot base64\n", "PEM"),
        ("options", {"storage_pool": "x" * 2000}, "1000 characters"),
    ],
)
def test_malformed_hypervisor_fields_are_refused(db, field, value, message):
    fields = {"name": "h1", "type": "libvirt", "endpoint": TEST_URI, field: value}
    with pytest.raises(ValidationError) as refused:
        services.create_hypervisor(SYSTEM, fields)
    assert message in str(refused.value)
    assert not Hypervisor.objects.exists()


def test_the_secret_is_revealed_per_call_audited_and_never_stored_in_a_reason(db, settings):
    from cryptography.fernet import Fernet

    from audit.models import AuditEvent

    settings.PUREBOOT_FERNET_KEYS = [Fernet.generate_key().decode()]
    settings.PUREBOOT_HYPERVISOR_TIMEOUT = 3
    password = "pw-Zq8-never-shown"
    credential = _credential("pve-closed", "https://127.0.0.1:9", password)
    hv = services.create_hypervisor(
        SYSTEM,
        {
            "name": "closed",
            "type": "proxmox",
            "endpoint": "https://127.0.0.1:9",
            "credential": credential,
        },
    )
    (op,) = run_queued()
    assert op.status == OperationStatus.RETRYING and op.error
    reveal = AuditEvent.objects.get(action="credential.reveal")
    assert reveal.actor == f"task:hypervisors.run_operation#{op.pk}"
    stored = " ".join(
        [op.error, Hypervisor.objects.get(pk=hv.pk).last_error, str(op.result), str(op.params)]
    )
    assert password not in stored
    assert not AuditEvent.objects.filter(details__icontains=password).exists()


def test_resetting_an_active_nodes_vm_needs_a_second_person(libvirt_hypervisor):
    run_queued()
    alice = make_user("Admin")
    vm = vms.create(libvirt_hypervisor.pk, Actor.of(alice), _request("rst-1"))
    run_queued()
    Node.objects.filter(pk=vm.node_id).update(state="active")
    with pytest.raises(gate.ApprovalRequired) as asked:
        vms.power(vm.pk, Actor.of(alice), "reboot")
    assert asked.value.proposal.action == "vm.power_reboot"
    # On an installed (not yet active) node's VM, a reset is the operator's own call.
    Node.objects.filter(pk=vm.node_id).update(state="installed")
    assert vms.power(vm.pk, Actor.of(alice), "reboot").kind == "power"
