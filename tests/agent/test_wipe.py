"""Deprovisioning end to end through the agent's protocol: four-eye request,
the agent boot, inventory, one planned method per disk, verified results,
signed certificates, and every way it must fail instead of pretending."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

from agent import certificates, services
from agent.models import AgentJob, WipeCertificate
from approvals import services as approvals
from nodes.models import Node
from tests.factories import make_node, make_user

from .helpers import (
    DISKS,
    ScriptedAgent,
    boot_token,
    import_agent_image,
    inventory,
    wipe_all,
    wipe_result,
)

pytestmark = pytest.mark.django_db
MAC = "52:54:00:12:34:56"


@pytest.fixture
def site():
    from nodes.models import Site

    return Site.objects.create(name="Lab", slug="lab")


def request_and_approve(api, node, **body):
    alice = make_user("Operator", sites=[node.site], username="alice")
    bob = make_user("Operator", sites=[node.site], username="bob")
    answer = api(alice).post(
        "/api/v1/deprovision", {"node": node.pk, "reason": "decommission", **body}, format="json"
    )
    assert answer.status_code == 202, answer.data
    request_id = answer.data["approval_request"]["id"]
    assert Node.objects.get(pk=node.pk).state == node.state  # nothing yet
    approvals.approve(request_id, bob)
    assert Node.objects.get(pk=node.pk).state == "deprovisioning"
    return alice, bob, request_id


def approved_wipe(api, client, node, **body) -> ScriptedAgent:
    """A deprovision asked and approved, the agent imported, and the machine's agent booted."""
    request_and_approve(api, node, **body)
    import_agent_image()
    return ScriptedAgent(boot_token(client, MAC))


def test_an_approved_deprovision_wipes_every_disk_and_certifies_each(api, client, site, tmp_path):
    node = make_node("active", site=site, macs=[MAC], hostname="db01", serial="SRV-1")
    alice, bob, request_id = request_and_approve(api, node)
    import_agent_image()
    script = client.get(f"/boot/ipxe?mac={MAC}").content.decode()
    assert "/boot/files/pureboot-agent-x86_64/vmlinuz" in script
    assert "pureboot.url=" in script and "starting the PureBoot agent on db01" in script
    agent = ScriptedAgent(boot_token(client, MAC))

    answer = wipe_all(agent)

    assert answer["action"] == "poweroff"
    node = Node.objects.get(pk=node.pk)
    assert node.state == "retired"
    assert node.inventory["disks"][0]["serial"] == "PBNVME01"
    job = AgentJob.objects.get(node=node)
    assert job.status == "succeeded"
    assert [s["params"].get("method") for s in job.steps] == [
        None,
        "nvme-format",  # QEMU's NVMe: Format, no Sanitize
        "overwrite",  # SATA without the ATA security feature set
        "overwrite",  # virtio: nothing but the blocks
    ]
    certs = WipeCertificate.objects.filter(node=node).order_by("disk_serial")
    assert [c.disk_serial for c in certs] == ["PBNVME01", "PBSATA01", "PBVIRTIO01"]
    for cert in certs:
        document = json.loads(cert.document)
        assert document["machine"]["hostname"] == "db01"
        assert document["machine"]["serial"] == "SRV-1"
        assert document["request"]["requested_by"] == "user:alice"
        assert document["request"]["approved_by"] == ["bob"]
        assert document["request"]["approval_request"] == request_id
        assert document["sanitization"]["standard"] == "NIST SP 800-88 Rev. 1"
        assert document["verification"]["result"] == "passed"
        verdict = certificates.verify(certificates.export(cert))
        assert verdict.ok, verdict.problems
    # The command an auditor runs on the exported file.
    path = tmp_path / "cert.json"
    path.write_text(json.dumps(certificates.export(certs[0])))
    call_command("verify_certificate", str(path))


def test_a_tampered_certificate_fails_verification(api, client, site, tmp_path):
    node = make_node("active", site=site, macs=[MAC])
    request_and_approve(api, node)
    import_agent_image()
    wipe_all(ScriptedAgent(boot_token(client, MAC)))
    exported = certificates.export(WipeCertificate.objects.filter(node=node).first())
    forged = dict(exported)
    forged["document"] = exported["document"].replace(
        '"method":"nvme-format"', '"method":"nvme-sanitize-crypto"'
    )
    forged["document"] = forged["document"].replace('"category":"clear"', '"category":"purge"')
    assert forged["document"] != exported["document"]
    verdict = certificates.verify(forged)
    assert not verdict.ok and "signature does not match" in verdict.problems[0]
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged))
    with pytest.raises(CommandError, match="signature does not match"):
        call_command("verify_certificate", str(path))
    # A re-signed forgery with another key names a key PureBoot never used.
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate()
    forged["signature"] = base64.b64encode(other.sign(forged["document"].encode())).decode()
    assert not certificates.verify(forged).ok


def test_a_wiped_machine_can_come_back_as_discovered(api, client, site):
    node = make_node("active", site=site, macs=[MAC])
    request_and_approve(api, node, after="discovered")
    import_agent_image()
    wipe_all(ScriptedAgent(boot_token(client, MAC)))
    node = Node.objects.get(pk=node.pk)
    assert node.state == "discovered" and node.workflow is None


def test_purge_demanded_of_a_disk_without_purge_fails_before_anything_is_written(api, client, site):
    node = make_node("active", site=site, macs=[MAC])
    agent = approved_wipe(api, client, node, category="purge")
    job = agent.job().json()
    answer = agent.run(job["job"], 0, inventory()).json()
    assert answer["action"] == "poweroff"
    node = Node.objects.get(pk=node.pk)
    assert node.state == "failed"
    job = AgentJob.objects.get(node=node)
    assert "cannot be purged" in job.error and "nvme0n1" in job.error
    assert "Nothing was written" in job.error
    assert [s["action"] for s in job.steps] == ["inventory"]  # no wipe step was ever planned
    assert not WipeCertificate.objects.exists()


@pytest.mark.parametrize(
    "spoil, reason",
    [
        ({"passed": False}, "verification failed"),
        ({"method": "overwrite"}, "not the planned"),
        ({"bytes_read": 4096}, "verification read 4096 bytes"),
        ({"expect": "changed"}, "expected 'uniform'"),
        ({"mode": "guessed"}, "unknown verification mode"),
    ],
)
def test_a_result_that_does_not_prove_the_wipe_fails_the_node(api, client, site, spoil, reason):
    node = make_node("active", site=site, macs=[MAC])
    agent = approved_wipe(api, client, node)
    job = agent.job().json()
    step = agent.run(job["job"], 0, inventory()).json()["step"]
    result = wipe_result(step["params"])
    if "method" in spoil:
        result["method"] = spoil["method"]
    else:
        result["verification"].update(spoil)
    answer = agent.run(job["job"], step["index"], result)
    assert answer.status_code == 200 and answer.json()["action"] == "poweroff"
    assert Node.objects.get(pk=node.pk).state == "failed"
    job = AgentJob.objects.get(node=node)
    assert job.status == "failed" and reason in job.error
    assert not WipeCertificate.objects.exists()


def test_a_machine_without_disks_is_not_declared_wiped(api, client, site):
    node = make_node("active", site=site, macs=[MAC])
    agent = approved_wipe(api, client, node)
    job = agent.job().json()
    agent.run(job["job"], 0, inventory(disks=[]))
    assert Node.objects.get(pk=node.pk).state == "failed"
    assert "found no disks" in AgentJob.objects.get(node=node).error


def test_a_power_cut_mid_step_resumes_that_step(api, client, site):
    node = make_node("active", site=site, macs=[MAC])
    agent = approved_wipe(api, client, node)
    job = agent.job().json()
    step = agent.run(job["job"], 0, inventory()).json()["step"]
    assert agent.step(job["job"], step["index"], "started").status_code == 200
    # Power lost: the machine network-boots again and its agent asks.
    again = ScriptedAgent(boot_token(client, MAC)).job().json()
    assert again["job"] == job["job"] and again["step"]["index"] == step["index"]
    assert again["step"]["resume"] is True
    assert Node.objects.get(pk=node.pk).state == "deprovisioning"  # never done meanwhile
    wipe_all_from = again
    answer = agent.run(
        job["job"], wipe_all_from["step"]["index"], wipe_result(again["step"]["params"])
    )
    assert answer.json()["step"]["index"] == step["index"] + 1
    assert AgentJob.objects.get(pk=job["job"]).steps[step["index"]]["attempts"] == 2


def test_a_silent_agent_fails_the_job_and_the_node_saying_where(api, client, site):
    node = make_node("active", site=site, macs=[MAC])
    agent = approved_wipe(api, client, node)
    job = agent.job().json()
    step = agent.run(job["job"], 0, inventory()).json()["step"]
    agent.step(job["job"], step["index"], "started")
    assert services.fail_lost_jobs() == []  # it just spoke
    AgentJob.objects.filter(pk=job["job"]).update(
        last_heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    assert services.fail_lost_jobs() == [job["job"]]
    node = Node.objects.get(pk=node.pk)
    assert node.state == "failed"
    error = AgentJob.objects.get(pk=job["job"]).error
    assert "no word from the agent" in error and "step 2 of 4: wipe nvme0n1 (started)" in error
    # Its late report changes nothing: the job and the token's episode are over.
    late = agent.step(job["job"], step["index"], "succeeded", wipe_result(step["params"]))
    assert late.status_code == 401
    assert not WipeCertificate.objects.exists()


def test_heartbeats_keep_a_long_step_alive(api, client, site):
    node = make_node("active", site=site, macs=[MAC])
    agent = approved_wipe(api, client, node)
    job = agent.job().json()
    AgentJob.objects.filter(pk=job["job"]).update(
        last_heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    beat = agent.client.post(
        f"/api/v1/agent/jobs/{job['job']}/heartbeat", {"step": 0, "progress": 40}, format="json"
    )
    assert beat.status_code == 200 and beat.json()["heartbeat"]["progress"] == 40
    assert services.fail_lost_jobs() == []


def test_the_protocol_refuses_out_of_order_and_foreign_reports(api, client, site):
    node = make_node("active", site=site, macs=[MAC])
    other = make_node("active", site=site, macs=["52:54:00:99:99:99"])
    agent = approved_wipe(api, client, node)
    job = agent.job().json()["job"]
    assert agent.step(job, 1, "started").status_code == 409  # not the current step
    finished = agent.step(job, 0, "succeeded", inventory())
    assert finished.status_code == 409 and "never reported started" in finished.json()["detail"]
    # Another machine's job is not this token's.
    other_job = AgentJob.objects.create(node=other, kind="wipe", episode="x", steps=[])
    assert agent.step(other_job.pk, 0, "started").status_code == 404
    # No token, a forged one, an install token: 401.
    anonymous = ScriptedAgent("")
    anonymous.client.credentials()
    assert anonymous.job().status_code in (401, 403)
    assert ScriptedAgent("forged:token").job().status_code == 401


def test_a_token_from_an_earlier_state_is_void(api, client, site):
    node = make_node("active", site=site, macs=[MAC])
    request_and_approve(api, node)
    import_agent_image()
    token = boot_token(client, MAC)
    wipe_all(ScriptedAgent(token))
    response = ScriptedAgent(token).job()
    assert response.status_code == 401 and "retired" in response.json()["detail"]


@pytest.mark.parametrize(
    "bad",
    [
        {"disks": [{**DISKS[0], "name": "../../etc"}]},
        {"disks": [{**DISKS[0], "path": "/etc/passwd"}]},
        {"disks": [{**DISKS[0], "size": -1}]},
        {"disks": [{**DISKS[0], "transport": "floppy"}]},
        {"disks": [DISKS[0]] * 65},
        {"disks": "all of them"},
        {"nics": [{"name": "eth0", "mac": "x" * 5000, "speed_mbps": 1}]},
    ],
)
def test_a_malformed_inventory_is_refused_and_nothing_is_recorded(api, client, site, bad):
    node = make_node("active", site=site, macs=[MAC])
    agent = approved_wipe(api, client, node)
    job = agent.job().json()["job"]
    agent.step(job, 0, "started")
    answer = agent.step(job, 0, "succeeded", {**inventory(), **bad})
    assert answer.status_code == 400
    assert Node.objects.get(pk=node.pk).inventory == {}
    assert Node.objects.get(pk=node.pk).state == "deprovisioning"


def test_logs_are_kept_bounded(api, client, site):
    node = make_node("active", site=site, macs=[MAC])
    agent = approved_wipe(api, client, node)
    job = agent.job().json()["job"]
    ok = agent.client.post(f"/api/v1/agent/jobs/{job}/log", {"lines": ["a", "b"]}, format="json")
    assert ok.status_code == 200 and ok.json() == {"kept": 2}
    too_many = agent.client.post(
        f"/api/v1/agent/jobs/{job}/log", {"lines": ["x"] * 501}, format="json"
    )
    assert too_many.status_code == 400
    assert (
        agent.client.post(
            f"/api/v1/agent/jobs/{job}/log", {"lines": "nope"}, format="json"
        ).status_code
        == 400
    )


def test_dry_run_names_each_disks_method_once_the_hardware_is_known(api, site):
    node = make_node("active", site=site, macs=[MAC])
    alice = make_user("Operator", sites=[site])
    dry = api(alice).post(
        "/api/v1/deprovision?dry_run=1", {"node": node.pk, "category": "purge"}, format="json"
    )
    assert dry.status_code == 200 and dry.data["needs_approval"] is True
    assert "unknown until the agent" in dry.data["disks_to_wipe"]
    Node.objects.filter(pk=node.pk).update(inventory=inventory())
    dry = api(alice).post(
        "/api/v1/deprovision?dry_run=1", {"node": node.pk, "category": "best"}, format="json"
    )
    assert [d["method"] for d in dry.data["disks_to_wipe"]] == [
        "nvme-format",
        "overwrite",
        "overwrite",
    ]
    purge = api(alice).post(
        "/api/v1/deprovision?dry_run=1", {"node": node.pk, "category": "purge"}, format="json"
    )
    assert all(
        d["method"] is None and "cannot be purged" in d["error"]
        for d in purge.data["disks_to_wipe"]
    )
    assert Node.objects.get(pk=node.pk).state == "active"


def test_deprovision_is_scoped_and_checked(api, site):
    from nodes.models import Site

    elsewhere = make_node("active", site=Site.objects.create(name="B", slug="b"))
    alice = make_user("Operator", sites=[site])
    viewer = make_user("User", sites=[site])
    mine = make_node("active", site=site)
    assert (
        api(alice).post("/api/v1/deprovision", {"node": elsewhere.pk}, format="json").status_code
        == 404
    )
    assert (
        api(viewer).post("/api/v1/deprovision", {"node": mine.pk}, format="json").status_code == 403
    )
    bad = api(alice).post(
        "/api/v1/deprovision", {"node": mine.pk, "after": "active"}, format="json"
    )
    assert bad.status_code == 400 and "after" in bad.data
    installing = make_node("installing", site=site)
    assert (
        api(alice).post("/api/v1/deprovision", {"node": installing.pk}, format="json").status_code
        == 409
    )


def test_without_an_agent_image_the_machine_boots_its_disk_and_says_why(api, client, site):
    node = make_node("active", site=site, macs=[MAC])
    request_and_approve(api, node)
    script = client.get(f"/boot/ipxe?mac={MAC}").content.decode()
    assert "manage.py build_agent --arch x86_64" in script and "exit 1" in script
    assert Node.objects.get(pk=node.pk).state == "deprovisioning"


def test_certificates_are_scoped_to_the_readers_sites(api, client, site):
    from nodes.models import Site

    node = make_node("active", site=site, macs=[MAC])
    request_and_approve(api, node)
    import_agent_image()
    wipe_all(ScriptedAgent(boot_token(client, MAC)))
    auditor = make_user("Auditor")
    outsider = make_user("Operator", sites=[Site.objects.create(name="B", slug="b")])
    assert api(auditor).get("/api/v1/wipe-certificates").data["count"] == 3
    assert api(outsider).get("/api/v1/wipe-certificates").data["count"] == 0
    cert = WipeCertificate.objects.first()
    assert api(outsider).get(f"/api/v1/wipe-certificates/{cert.uuid}").status_code == 404
    assert api(outsider).get("/api/v1/agent-jobs").data["count"] == 0


@override_settings(PUREBOOT_AGENT_INVENTORY=True)
def test_a_discovered_machine_reports_its_hardware_once(client):
    node = make_node("discovered", macs=[MAC], serial="")
    import_agent_image()
    agent = ScriptedAgent(boot_token(client, MAC))
    job = agent.job().json()
    assert job["kind"] == "inventory"
    inv = inventory(serial="CZ1234", uuid="4c4c4544-0042-3510-8052-b7c04f4e3732")
    inv["nics"].append(
        {"name": "eth1", "mac": "52:54:00:12:34:57", "speed_mbps": 1000, "driver": "e1000"}
    )
    assert agent.run(job["job"], 0, inv).json()["action"] == "poweroff"
    node = Node.objects.get(pk=node.pk)
    assert node.state == "discovered" and node.serial == "CZ1234"
    assert str(node.system_uuid) == "4c4c4544-0042-3510-8052-b7c04f4e3732"
    assert sorted(node.interfaces.values_list("mac", flat=True)) == [MAC, "52:54:00:12:34:57"]
    # Known now: the next boot waits for an operator as before.
    assert "waiting for an assignment" in client.get(f"/boot/ipxe?mac={MAC}").content.decode()
