"""The hypervisor API: every endpoint, its refusals, scoping and four-eye answers,
against libvirt's real test driver."""

from __future__ import annotations

import libvirt
import pytest

from approvals import services as approvals
from hypervisors.choices import VMStatus
from hypervisors.models import Hypervisor, VirtualMachine
from nodes.models import Node
from tests.factories import make_user, make_workflow

from .conftest import TEST_URI, run_queued

pytestmark = pytest.mark.django_db

OPTIONS = {"template_pool": "default-pool", "storage_pool": "default-pool"}
VM_WORKFLOW = """\
name: {name}
description: a VM that installs Ubuntu
tasks:
  - type: vm_create
    memory: 1024
    cores: 2
    disks:
      - size: 8GiB
        storage: default-pool
    networks:
      - name: default
  - type: pxe_boot
    kernel: /boot/ubuntu/vmlinuz
    initrd: /boot/ubuntu/initrd
"""


@pytest.fixture
def admin_api(api):
    return api(make_user("Admin"))


def _create_hypervisor(client, **extra) -> dict:
    body = {"name": "lab-kvm", "type": "libvirt", "endpoint": TEST_URI, "options": OPTIONS}
    body.update(extra)
    answer = client.post("/api/v1/hypervisors", body, format="json")
    assert answer.status_code == 201, answer.data
    run_queued()
    return answer.data


def _new_vm(client, hypervisor: dict, name: str, **extra):
    body = {"name": name, "cpus": 1, "memory_mib": 512, "disks": [{"size": "1GiB"}],
            "networks": [{"network": "default"}], **extra}  # fmt: skip
    return client.post(f"/api/v1/hypervisors/{hypervisor['id']}/vms", body, format="json")


def test_admin_registers_a_hypervisor_and_sees_it_synced(admin_api):
    made = _create_hypervisor(admin_api)
    assert "create_vm" in made["capabilities"] and "live_migrate" not in made["capabilities"]
    got = admin_api.get(f"/api/v1/hypervisors/{made['id']}").data
    assert got["health"] == "ok" and got["inventory"]["networks"] == ["default"]
    listed = admin_api.get("/api/v1/hypervisors").data
    assert [h["name"] for h in listed["results"]] == ["lab-kvm"]
    vms = admin_api.get(f"/api/v1/hypervisors/{made['id']}/vms").data["results"]
    assert "test" in [v["name"] for v in vms]


def test_bad_input_is_a_400_naming_the_field(admin_api):
    for body, field in (
        ({"name": "x", "type": "xen", "endpoint": TEST_URI}, "type"),
        ({"name": "bad name", "type": "libvirt", "endpoint": TEST_URI}, "name"),
        ({"name": "x", "type": "libvirt", "endpoint": TEST_URI, "options": {"a": 1}}, "options"),
        ({"name": "x", "type": "libvirt", "endpoint": TEST_URI, "options": []}, "options"),
        ({"name": "x", "type": "libvirt", "endpoint": "a" * 2000}, "endpoint"),
        (
            {"name": "x", "type": "libvirt", "endpoint": TEST_URI, "credential": "nope"},
            "credential",
        ),
    ):
        answer = admin_api.post("/api/v1/hypervisors", body, format="json")
        assert answer.status_code == 400, (body, answer.data)
        assert field in answer.data, (body, answer.data)
    assert not Hypervisor.objects.exists()


def test_operator_and_user_cannot_add_or_remove(api, admin_api):
    made = _create_hypervisor(admin_api)
    for role in ("Operator", "User", "Auditor"):
        client = api(make_user(role))
        body = {"name": f"h-{role}", "type": "libvirt", "endpoint": TEST_URI}
        assert client.post("/api/v1/hypervisors", body, format="json").status_code == 403
        assert client.delete(f"/api/v1/hypervisors/{made['id']}").status_code in (403, 404)
    assert client.get("/api/v1/hypervisors").status_code == 200  # User may read


def test_site_scoping_hides_other_sites(api, admin_api, site_a):
    made = _create_hypervisor(admin_api, site="site-a")
    outsider = api(make_user("Operator"))
    assert outsider.get("/api/v1/hypervisors").data["results"] == []
    assert outsider.get(f"/api/v1/hypervisors/{made['id']}").status_code == 404
    assert outsider.post(f"/api/v1/hypervisors/{made['id']}/sync").status_code == 404
    insider = api(make_user("Operator", sites=[site_a]))
    assert insider.get(f"/api/v1/hypervisors/{made['id']}").status_code == 200
    assert insider.post(f"/api/v1/hypervisors/{made['id']}/sync").status_code == 202


def test_create_vm_from_a_workflow_and_follow_it(api, admin_api, site_a):
    made = _create_hypervisor(admin_api, site="site-a")
    workflow = make_workflow("vm-ubuntu", VM_WORKFLOW.format(name="vm-ubuntu"))
    operator = api(make_user("Operator", sites=[site_a]))
    answer = operator.post(
        f"/api/v1/hypervisors/{made['id']}/vms",
        {"name": "web-01", "workflow": workflow.name},
        format="json",
    )
    assert answer.status_code == 202, answer.data
    vm, operation = answer.data["vm"], answer.data["operation"]
    assert vm["status"] == "creating" and operation["status"] == "queued"
    node = Node.objects.get(pk=vm["node"])
    assert node.state == "pending" and node.workflow == workflow and node.site == site_a
    assert node.interfaces.get().mac == vm["macs"][0]
    run_queued()
    followed = operator.get(f"/api/v1/hypervisor-operations/{operation['id']}").data
    assert followed["status"] == "succeeded", followed
    vm = operator.get(f"/api/v1/vms/{vm['id']}").data
    assert vm["status"] == "present" and vm["power"] == "running"
    assert vm["cpus"] == 2 and vm["memory_mib"] == 1024
    domain = libvirt.open(TEST_URI).lookupByUUIDString(vm["platform_id"])
    assert domain.isActive()


def test_vm_request_refusals(api, admin_api):
    made = _create_hypervisor(admin_api)
    url = f"/api/v1/hypervisors/{made['id']}/vms"
    base = {"name": "v1", "cpus": 1, "memory_mib": 512, "networks": [{"network": "default"}]}
    cases = (
        ({**base, "disks": [{"size": "huge"}]}, "disks[0].size"),
        ({**base, "disks": [{"size": "1PiB"}]}, "disks"),
        ({**base, "cpus": 0, "disks": [{"size": "1GiB"}]}, "cpus"),
        ({**base}, "disks"),
        ({**base, "name": "bad_host name", "disks": [{"size": "1GiB"}]}, "name"),
        ({**base, "template": "missing"}, "template"),
        ({"name": "v2", "disks": [{"size": "1GiB"}]}, "cpus"),
        ({**base, "workflow": "no-such", "disks": [{"size": "1GiB"}]}, "workflow"),
    )
    for body, field in cases:
        answer = admin_api.post(url, body, format="json")
        assert answer.status_code == 400, (body, answer.data)
        assert any(field in k or field in str(v) for k, v in answer.data.items()), (
            body,
            answer.data,
        )
    assert not VirtualMachine.objects.filter(managed=True).exists()
    assert not Node.objects.exists()
    body = {**base, "disks": [{"size": "1GiB"}]}
    # A site-less hypervisor is seen by all-sites holders only.
    assert api(make_user("User")).post(url, body, format="json").status_code == 404
    # An Auditor sees it, but may not create VMs.
    assert api(make_user("Auditor")).post(url, body, format="json").status_code == 403


def test_unsupported_capability_is_409_naming_driver_and_capability(admin_api):
    made = _create_hypervisor(admin_api)
    answer = _new_vm(admin_api, made, "m1")
    run_queued()
    vm_id = answer.data["vm"]["id"]
    refused = admin_api.post(f"/api/v1/vms/{vm_id}/migrate", {"host": "h2"}, format="json")
    assert refused.status_code == 409
    assert refused.data["code"] == "hypervisor_capability_unsupported"
    assert "KVM/libvirt" in refused.data["detail"] and "live_migrate" in refused.data["detail"]
    refused = admin_api.post(f"/api/v1/vms/{vm_id}/ha", {"enabled": True}, format="json")
    assert refused.status_code == 409 and "ha" in refused.data["detail"]


def test_delete_vm_is_four_eye_then_done(api, admin_api):
    made = _create_hypervisor(admin_api)
    answer = _new_vm(admin_api, made, "d1")
    run_queued()
    vm_id = answer.data["vm"]["id"]
    asked = admin_api.delete(f"/api/v1/vms/{vm_id}", {"reason": "done with it"}, format="json")
    assert asked.status_code == 202 and asked.data["code"] == "approval_required"
    assert VirtualMachine.objects.get(pk=vm_id).status == VMStatus.PRESENT
    again = admin_api.delete(f"/api/v1/vms/{vm_id}", format="json")
    assert again.status_code == 409  # one pending request per target
    approvals.approve(asked.data["approval_request"]["id"], make_user("Admin"))
    run_queued()
    assert VirtualMachine.objects.get(pk=vm_id).status == VMStatus.DELETED


def test_power_on_off_reboot(admin_api):
    made = _create_hypervisor(admin_api)
    answer = _new_vm(admin_api, made, "p1", power_on=False)
    run_queued()
    vm_id = answer.data["vm"]["id"]
    assert admin_api.get(f"/api/v1/vms/{vm_id}").data["power"] == "stopped"
    for action, expected in (("on", "running"), ("reboot", "running"), ("off", "stopped")):
        answer = admin_api.post(f"/api/v1/vms/{vm_id}/power", {"action": action}, format="json")
        assert answer.status_code == 202, answer.data
        run_queued()
        assert admin_api.get(f"/api/v1/vms/{vm_id}").data["power"] == expected
    bad = admin_api.post(f"/api/v1/vms/{vm_id}/power", {"action": "explode"}, format="json")
    assert bad.status_code == 400


def test_remove_hypervisor_with_nodes_is_four_eye(admin_api):
    made = _create_hypervisor(admin_api)
    empty = _create_hypervisor(admin_api, name="spare")
    assert admin_api.delete(f"/api/v1/hypervisors/{empty['id']}").status_code == 204
    _new_vm(admin_api, made, "r1")
    run_queued()
    asked = admin_api.delete(f"/api/v1/hypervisors/{made['id']}")
    assert asked.status_code == 202, asked.data
    assert Hypervisor.objects.filter(pk=made["id"]).exists()
    approvals.approve(asked.data["approval_request"]["id"], make_user("Admin"))
    assert not Hypervisor.objects.filter(pk=made["id"]).exists()
    # The node stays; its VM's record is gone with the hypervisor's.
    assert Node.objects.filter(hostname="r1").exists()


def test_templates_sync_endpoint(api, admin_api, template_volume):
    made = _create_hypervisor(admin_api)
    answer = admin_api.post("/api/v1/templates/sync", {}, format="json")
    assert answer.status_code == 202 and [o["kind"] for o in answer.data] == ["sync"]
    run_queued()
    names = [
        t["name"]
        for t in admin_api.get(f"/api/v1/hypervisors/{made['id']}/templates").data["results"]
    ]
    assert template_volume in names
    assert (
        admin_api.post("/api/v1/templates/sync", {"hypervisor": 999999}, format="json").status_code
        == 404
    )
    assert (
        admin_api.post("/api/v1/templates/sync", {"hypervisor": "x"}, format="json").status_code
        == 400
    )


def test_a_vnic_profile_is_refused_on_a_hypervisor_that_has_none(admin_api):
    made = _create_hypervisor(admin_api)
    make_workflow(
        "with-profile",
        VM_WORKFLOW.format(name="with-profile").replace(
            "      - name: default\n", "      - name: default\n        profile: default\n"
        ),
    )
    answer = admin_api.post(
        f"/api/v1/hypervisors/{made['id']}/vms",
        {"name": "pr1", "workflow": "with-profile"},
        format="json",
    )
    assert answer.status_code == 400
    assert "vNIC profile is oVirt's" in str(answer.data["networks[0].profile"])
    assert not Node.objects.filter(hostname="pr1").exists()
