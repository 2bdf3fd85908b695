"""Identity is guarded: what a machine is recognised by changes only with a second person.

Red team: an Operator alone moved a MAC from one node to another (API PATCH of
interfaces, and the admin inline), so the machine behind an active node booted
another node's install, and an approved reprovision could hit a different
machine than the one approved.
"""

from __future__ import annotations

import pytest

from approvals import services as approvals
from approvals.models import ApprovalRequest
from nodes import services
from nodes.models import NetworkInterface, Node
from pureboot import gate
from tests.factories import make_node, make_user

pytestmark = pytest.mark.django_db

GUARDED = ["pending", "installing", "installed", "active", "reprovision", "failed"]


def _staff(role, sites=()):
    user = make_user(role, sites=sites)
    user.is_staff = True
    user.save()
    return user


@pytest.mark.parametrize("state", GUARDED)
def test_api_interface_change_on_a_guarded_node_waits_for_a_second_person(api, site_a, state):
    operator = make_user("Operator", sites=[site_a])
    node = make_node(state, site=site_a, macs=["52:54:00:10:00:01"])
    resp = api(operator).patch(
        f"/api/v1/nodes/{node.pk}",
        {"interfaces": [{"mac": "52:54:00:10:00:02", "is_primary": True}]},
        format="json",
    )
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert body["code"] == "approval_required"
    request = ApprovalRequest.objects.get(pk=body["approval_request"]["id"])
    assert request.action == "identity.change" and request.status == "pending"
    assert list(node.interfaces.values_list("mac", flat=True)) == ["52:54:00:10:00:01"]


@pytest.mark.parametrize("field,value", [("serial", "SN-NEW-1"), ("system_uuid", None)])
def test_serial_and_uuid_are_identities_too(api, site_a, field, value):
    operator = make_user("Operator", sites=[site_a])
    node = make_node(
        "active", site=site_a, serial="SN-OLD", system_uuid="4c4c4544-0042-3510-8052-b7c04f4e3732"
    )
    resp = api(operator).patch(f"/api/v1/nodes/{node.pk}", {field: value}, format="json")
    assert resp.status_code == 202, resp.content
    fresh = Node.objects.get(pk=node.pk)
    assert (fresh.serial, str(fresh.system_uuid)) == (
        "SN-OLD",
        "4c4c4544-0042-3510-8052-b7c04f4e3732",
    )


def test_non_identity_edits_and_discovered_nodes_change_at_once(api, site_a):
    operator = make_user("Operator", sites=[site_a])
    active = make_node("active", site=site_a)
    resp = api(operator).patch(f"/api/v1/nodes/{active.pk}", {"vendor": "Dell"}, format="json")
    assert resp.status_code == 200 and Node.objects.get(pk=active.pk).vendor == "Dell"
    fresh = make_node("discovered", site=site_a, macs=["52:54:00:10:00:05"])
    resp = api(operator).patch(
        f"/api/v1/nodes/{fresh.pk}",
        {"interfaces": [{"mac": "52:54:00:10:00:06"}]},
        format="json",
    )
    assert resp.status_code == 200, resp.content
    assert list(fresh.interfaces.values_list("mac", flat=True)) == ["52:54:00:10:00:06"]


def test_admin_inline_change_on_an_active_node_files_a_request(client, site_a):
    node = make_node("active", site=site_a, macs=["52:54:00:10:00:11"])
    client.force_login(_staff("Operator", sites=[site_a]))
    iface = node.interfaces.get()
    resp = client.post(
        f"/admin/nodes/node/{node.pk}/change/",
        {
            "hostname": "",
            "site": site_a.pk,
            "arch": "x86_64",
            "firmware": "uefi",
            "metadata": "{}",
            "interfaces-TOTAL_FORMS": "1",
            "interfaces-INITIAL_FORMS": "1",
            "interfaces-MIN_NUM_FORMS": "0",
            "interfaces-MAX_NUM_FORMS": "1000",
            "interfaces-0-id": iface.pk,
            "interfaces-0-node": node.pk,
            "interfaces-0-mac": "52:54:00:10:00:12",
            "interfaces-0-is_primary": "on",
        },
    )
    request = ApprovalRequest.objects.get(action="identity.change", node=node)
    assert resp.status_code == 302 and resp["Location"] == f"/approvals/{request.pk}/"
    assert list(node.interfaces.values_list("mac", flat=True)) == ["52:54:00:10:00:11"]


def test_approved_identity_change_is_applied_once_approved(site_a):
    alice = make_user("Operator", sites=[site_a])
    bob = make_user("Operator", sites=[site_a])
    node = make_node("active", site=site_a, macs=["52:54:00:10:00:21"])
    with pytest.raises(services.ApprovalRequired) as exc:
        services.update_node(node.pk, services.Actor.of(alice), {}, [{"mac": "52:54:00:10:00:22"}])
    request = approvals.file(exc.value.proposal, alice)
    approvals.approve(request.pk, bob)
    request.refresh_from_db()
    assert request.status == "executed", request.result
    assert list(node.interfaces.values_list("mac", flat=True)) == ["52:54:00:10:00:22"]


def test_a_mac_never_moves_silently_between_nodes(api, site_a):
    operator = make_user("Operator", sites=[site_a])
    make_node("active", site=site_a, macs=["52:54:00:10:00:31"])
    spare = make_node("discovered", site=site_a, macs=["52:54:00:10:00:32"])
    resp = api(operator).patch(
        f"/api/v1/nodes/{spare.pk}",
        {"interfaces": [{"mac": "52:54:00:10:00:31"}]},
        format="json",
    )
    assert resp.status_code == 400
    assert NetworkInterface.objects.get(mac="52:54:00:10:00:31").node.state == "active"


def test_a_mac_conflict_names_no_node_of_another_site(api, site_a, site_b):
    operator = make_user("Operator", sites=[site_a])
    hidden = make_node("active", site=site_b, macs=["52:54:00:10:00:41"])
    mine = make_node("discovered", site=site_a)
    resp = api(operator).patch(
        f"/api/v1/nodes/{mine.pk}",
        {"interfaces": [{"mac": "52:54:00:10:00:41"}]},
        format="json",
    )
    assert resp.status_code == 400
    text = resp.content.decode()
    assert "another node" in text and f"node {hidden.pk}" not in text


def test_an_approval_is_void_once_the_identities_changed(site_a):
    """An approved reprovision of node A must not hit whatever machine answers as A now.

    A node with a pending request takes no other request (an identity change
    included); should its identities change anyway (by any path), the
    approval is bound to the identities it was made for and does nothing.
    """
    alice, bob = make_user("Admin"), make_user("Admin")
    node = make_node("installed", site=site_a, macs=["52:54:00:10:00:51"])
    with pytest.raises(services.ApprovalRequired) as exc:
        services.perform(node.pk, "reprovision", services.Actor.of(alice), reason="disk")
    reprovision = approvals.file(exc.value.proposal, alice)
    with pytest.raises(services.ApprovalRequired) as exc:
        services.update_node(node.pk, services.Actor.of(bob), {}, [{"mac": "52:54:00:10:00:52"}])
    with pytest.raises(approvals.NotPending, match=f"#{reprovision.pk}"):
        approvals.file(exc.value.proposal, bob)
    NetworkInterface.objects.filter(node=node).update(mac="52:54:00:10:00:52")
    approvals.approve(reprovision.pk, bob)
    reprovision.refresh_from_db()
    assert reprovision.status == "failed"
    assert "identities" in reprovision.result
    assert Node.objects.get(pk=node.pk).state == "installed"


def test_a_sealed_approval_fits_only_its_own_node_and_action(site_a):
    alice, bob = make_user("Admin"), make_user("Admin")
    first = make_node("installed", site=site_a)
    second = make_node("installed", site=site_a)
    approval = gate.seal(1, "reprovision", f"node:{first.pk}", services.binding(first), ("bob",))
    for node_id, action in ((second.pk, "reprovision"), (first.pk, "deprovision")):
        with pytest.raises(services.TransitionForbidden):
            services.perform(node_id, action, services.Actor.of(alice), approval=approval)
    forged = gate.Approval(1, "reprovision", f"node:{second.pk}", "x", ("bob",), "sig")
    with pytest.raises(services.TransitionForbidden, match="not one PureBoot sealed"):
        services.perform(second.pk, "reprovision", services.Actor.of(alice), approval=forged)
    assert {first.state, second.state} == {"installed"}
    del bob


def test_an_identity_request_reads_plainly_on_its_page_and_in_the_api(client, api, site_a):
    alice, bob = make_user("Operator", sites=[site_a]), make_user("Admin")
    node = make_node("active", site=site_a, hostname="db01", macs=["52:54:00:10:00:61"])
    with pytest.raises(services.ApprovalRequired) as exc:
        services.update_node(node.pk, services.Actor.of(alice), {}, [{"mac": "52:54:00:10:00:62"}])
    request = approvals.file(exc.value.proposal, alice)
    client.force_login(bob)
    page = client.get(f"/approvals/{request.pk}/")
    assert page.status_code == 200
    assert "52:54:00:10:00:62" in page.content.decode()
    body = api(bob).get(f"/api/v1/approvals/{request.pk}").json()
    assert body["action"] == "identity.change" and "recognised by" in body["what"]


def test_a_conflicting_mac_is_refused_before_any_request_is_filed(api, site_a):
    operator = make_user("Operator", sites=[site_a])
    make_node("discovered", site=site_a, macs=["52:54:00:10:00:71"])
    active = make_node("active", site=site_a, macs=["52:54:00:10:00:72"])
    resp = api(operator).patch(
        f"/api/v1/nodes/{active.pk}",
        {"interfaces": [{"mac": "52:54:00:10:00:71"}]},
        format="json",
    )
    assert resp.status_code == 400
    assert not ApprovalRequest.objects.exists()
