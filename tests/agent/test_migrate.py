"""1:1 migration through the agent's protocol, with a real tgt iSCSI target.

The controller side is real: tgtd (Debian's ``tgt``) runs for this module
on a private control port and a loopback portal, and PureBoot makes, admits
and removes the migration's LUN with ``tgtadm``. The two machines are
scripted agents (tests/agent/helpers.py) reporting what the real agent
reports; the real agent copies and restores a disk over iSCSI in the boot
lab (tests/e2e/test_agent_lab.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from agent import iscsi, services
from agent import migration as agent_migration
from agent.models import AgentJob
from approvals import services as approvals
from approvals.models import ApprovalRequest
from audit.models import AuditEvent
from nodes.models import Migration, NetworkInterface, Node, NodeEvent, Site
from tests.factories import make_node, make_user

from .helpers import DISKS, ScriptedAgent, boot_token, import_agent_image, inventory

pytestmark = pytest.mark.django_db
OLD_MAC = "52:54:00:aa:00:01"
NEW_MAC = "52:54:00:bb:00:02"
SOURCE_ADDR = "10.99.0.101"
TARGET_ADDR = "10.99.0.102"
SHA = "ab" * 32  # what a scripted agent reports where the controller cannot check it
ONE_DISK = [DISKS[2]]  # the source: one 48 MiB virtio disk
BIG_DISK = [{**DISKS[0], "size": 64 * 2**20}]  # the target: one 64 MiB NVMe disk


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tgtd():
    """A real tgtd on its own control port, serving iSCSI on a loopback port."""
    binary = shutil.which("tgtd") or ("/usr/sbin/tgtd" if os.path.exists("/usr/sbin/tgtd") else "")
    if not binary:
        pytest.fail("tgtd is not installed: apt-get install tgt (migration tests need it)")
    control = 100 + os.getpid() % 800
    proc = subprocess.Popen(
        [binary, "-f", "-C", str(control), "--iscsi", f"portal=127.0.0.1:{_free_port()}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    command = f"{shutil.which('tgtadm') or '/usr/sbin/tgtadm'} -C {control}"
    deadline = time.monotonic() + 15
    while True:
        probe = subprocess.run(
            [*command.split(), "--lld", "iscsi", "--op", "show", "--mode", "target"],
            capture_output=True,
        )
        if probe.returncode == 0:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"tgtd did not start (needs root): {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.2)
    yield command
    proc.kill()  # tgtd stops only on SIGKILL
    proc.wait()


@pytest.fixture
def lun_dir(tgtd, tmp_path):
    with override_settings(
        PUREBOOT_ISCSI_TGTADM=tgtd,
        PUREBOOT_ISCSI_DIR=tmp_path / "iscsi",
        PUREBOOT_ISCSI_PORTAL="10.99.0.1",
    ):
        yield tmp_path / "iscsi"


def shown(tgtd: str) -> str:
    args = [*tgtd.split(), "--lld", "iscsi", "--op", "show", "--mode", "target"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def site():
    return Site.objects.create(name="Lab", slug="lab")


@pytest.fixture
def machines(site):
    source = make_node("active", site=site, macs=[OLD_MAC], hostname="db01", serial="OLD-1")
    target = make_node("discovered", site=site, macs=[NEW_MAC], serial="NEW-2")
    return source, target


def ask(api, src, dst, user=None, **body):
    alice = user or make_user("Operator", sites=[src.site], username="alice")
    data = {"source": src.pk, "target": dst.pk, "reason": "new chassis"}
    return alice, api(alice).post("/api/v1/migrate", {**data, **body}, format="json")


def approved(api, source, target, **body) -> Migration:
    alice, answer = ask(api, source, target, **body)
    assert answer.status_code == 202, answer.data
    bob = make_user("Operator", sites=[source.site], username="bob")
    approvals.approve(answer.data["approval_request"]["id"], bob)
    return Migration.objects.get(source=source)


def agent_at(client, mac: str, address: str) -> ScriptedAgent:
    agent = ScriptedAgent(boot_token(client, mac))
    agent.client.defaults["REMOTE_ADDR"] = address
    return agent


def elsewhere(agent: ScriptedAgent) -> ScriptedAgent:
    """Another host on the boot network holding the same agent token."""
    thief = ScriptedAgent(agent.client._credentials["HTTP_AUTHORIZATION"].split()[1])
    thief.client.defaults["REMOTE_ADDR"] = "10.99.0.166"
    return thief


def copy_result(params, sha=SHA, lun_sha=None):
    return {"sha256": sha, "lun_sha256": lun_sha or sha, "bytes": params["size"], "seconds": 1.5}


def fill_lun(lun_dir, migration, seed: bytes = b"db01 system ") -> str:
    """What the source's agent writes through iSCSI: the disk's bytes, into the LUN file."""
    size = ONE_DISK[0]["size"]
    data = (seed * (size // len(seed) + 1))[:size]
    (lun_dir / f"migration-{migration.pk}.img").write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def worker_runs(callbacks, name: str, migration) -> None:
    """What a Celery worker does with the task queued on commit: it was queued, and it runs.

    With Redis (the services leg) a queued task goes to the broker, not to this
    test's transaction; in-process (SQLite) it has already run, and runs again
    as a no-op.
    """
    names = [getattr(getattr(cb, "__self__", None), "task", None) for cb in callbacks]
    assert name in names, names
    {"agent.check_migration_copy": agent_migration.check_copy,
     "agent.teardown_migration": agent_migration.teardown}[name](migration.pk)  # fmt: skip


def copied(out, lun_dir, migration, capture, sha=None) -> dict:
    """The source's agent copies its disk into the LUN and reports; the controller checks."""
    answer = out.job().json()
    real = fill_lun(lun_dir, migration)
    with capture(execute=True) as callbacks:
        answer = out.run(
            answer["job"],
            answer["step"]["index"],
            copy_result(answer["step"]["params"], sha or real),
        ).json()
    worker_runs(callbacks, "agent.check_migration_copy", migration)
    migration.refresh_from_db()
    return answer


def started(api, client, machines) -> tuple[Migration, ScriptedAgent, ScriptedAgent]:
    """Approved, both agents booted and inventoried: the source's copy step is next."""
    source, target = machines
    migration = approved(api, source, target)
    import_agent_image()
    out = agent_at(client, OLD_MAC, SOURCE_ADDR)
    into = agent_at(client, NEW_MAC, TARGET_ADDR)
    answer = out.job().json()
    assert answer["kind"] == "migrate_out" and answer["step"]["action"] == "inventory"
    answer = out.run(answer["job"], 0, inventory(ONE_DISK)).json()
    assert answer["action"] == "run", answer
    answer = into.job().json()
    assert answer["kind"] == "migrate_in"
    answer = into.run(answer["job"], 0, inventory(BIG_DISK)).json()
    assert answer["action"] == "wait", answer
    return migration, out, into


# --- asking ---------------------------------------------------------------------


def test_a_migration_needs_a_second_person_and_moves_both_machines_only_then(
    api, machines, lun_dir
):
    source, target = machines
    alice, answer = ask(api, source, target)
    assert answer.status_code == 202, answer.data
    request = ApprovalRequest.objects.get(pk=answer.data["approval_request"]["id"])
    assert Node.objects.get(pk=source.pk).state == "active"
    assert Node.objects.get(pk=target.pk).state == "discovered"
    assert not Migration.objects.exists()
    text = request.what
    assert f"node {target} (#{target.pk}, MAC {NEW_MAC})" in text
    assert "its only disk" in text and "deprovision request is filed" in text
    assert "not built" not in text

    bob = make_user("Operator", sites=[source.site], username="bob")
    approvals.approve(request.pk, bob)
    assert Node.objects.get(pk=source.pk).state == "migrating"
    assert Node.objects.get(pk=target.pk).state == "migrating"
    migration = Migration.objects.get()
    assert (migration.source_id, migration.target_id, migration.status) == (
        source.pk,
        target.pk,
        "copying",
    )
    assert migration.requested_by == "user:alice" and migration.approval == request.pk
    event = NodeEvent.objects.filter(node=target, kind="transition").get()
    assert event.details["approvers"] == ["bob"] and "taking over node db01" in event.message


def test_an_approval_is_void_once_the_target_machine_changed(api, machines, lun_dir):
    source, target = machines
    _, answer = ask(api, source, target)
    NetworkInterface.objects.filter(node=target).update(mac="52:54:00:cc:00:03")
    bob = make_user("Operator", sites=[source.site], username="bob")
    approvals.approve(answer.data["approval_request"]["id"], bob)
    request = ApprovalRequest.objects.get(pk=answer.data["approval_request"]["id"])
    assert request.status == "failed"
    assert "machine to migrate onto" in request.result
    assert Node.objects.get(pk=source.pk).state == "active"
    assert not Migration.objects.exists()


def test_bad_targets_and_disk_rules_are_refused_before_anything_is_asked(api, machines, site):
    source, target = machines
    other = Site.objects.create(name="Other", slug="other")
    hidden = make_node("discovered", site=other, hostname="secret-box")
    busy = make_node("active", site=site)
    arm = make_node("discovered", site=site, arch="aarch64")
    alice = make_user("Operator", sites=[site], username="alice")
    cases = [
        ({"target": hidden.pk}, "target", f"No node {hidden.pk} visible to you"),
        ({"target": 10**17}, "target", "visible to you"),
        ({"target": busy.pk}, "target", "is active"),
        ({"target": source.pk}, "target", "cannot migrate onto itself"),
        ({"target": arm.pk}, "target", "aarch64"),
        ({"disk": "rm -rf /"}, "disk", "disk rule"),
        ({"target": "x"}, "target", "valid integer"),
    ]
    for body, field, words in cases:
        _, answer = ask(api, source, target, user=alice, **body)
        assert answer.status_code == 400, (body, answer.data)
        assert words in str(answer.data[field]), (body, answer.data)
        assert "secret-box" not in json.dumps(answer.data)
    assert not ApprovalRequest.objects.filter(action="migrate").exists()
    generic = api(alice).patch(
        f"/api/v1/nodes/{source.pk}/state", {"action": "migrate"}, format="json"
    )
    assert generic.status_code == 400 and "discovered node" in str(generic.data)
    generic = api(alice).patch(
        f"/api/v1/nodes/{source.pk}/state",
        {"action": "migrate", "target": target.pk},
        format="json",
    )
    assert generic.status_code == 202  # the same request as POST /api/v1/migrate


def test_a_dry_run_names_the_disks_and_asks_nothing(api, machines):
    source, target = machines
    Node.objects.filter(pk=source.pk).update(inventory=inventory(ONE_DISK))
    Node.objects.filter(pk=target.pk).update(inventory=inventory(BIG_DISK))
    alice = make_user("Operator", sites=[source.site], username="alice")
    answer = api(alice).post(
        "/api/v1/migrate?dry_run=1", {"source": source.pk, "target": target.pk}, format="json"
    )
    assert answer.status_code == 200, answer.data
    assert answer.data["needs_approval"] is True and answer.data["problem"] is None
    assert answer.data["disk_to_copy"]["serial"] == "PBVIRTIO01"
    assert answer.data["disk_to_overwrite"]["serial"] == "PBNVME01"
    Node.objects.filter(pk=target.pk).update(inventory=inventory([{**DISKS[1]}]))  # 32 MiB
    answer = api(alice).post(
        "/api/v1/migrate?dry_run=1", {"source": source.pk, "target": target.pk}, format="json"
    )
    assert "no disk large enough" in answer.data["problem"]
    assert not ApprovalRequest.objects.exists() and not Migration.objects.exists()


# --- the whole move ---------------------------------------------------------------


def test_a_migration_copies_restores_checks_and_hands_the_identity_over(
    api, client, machines, lun_dir, tgtd, django_capture_on_commit_callbacks
):
    source, target = machines
    migration, out, into = started(api, client, machines)

    # The LUN exists, sized to the source disk, admitting only the source's address.
    migration.refresh_from_db()
    listing = shown(tgtd)
    assert iscsi.iqn(migration) in listing and SOURCE_ADDR in listing
    assert TARGET_ADDR not in listing and iscsi.chap_user(migration) in listing
    assert (lun_dir / f"migration-{migration.pk}.img").stat().st_size == ONE_DISK[0]["size"]
    answer = out.job().json()
    step = answer["step"]
    assert step["action"] == "copy_out" and step["params"]["disk"]["serial"] == "PBVIRTIO01"
    secret = step["params"]["chap"]["secret"]
    assert len(secret) == 16 and step["params"]["portal"] == "10.99.0.1"
    # The secret is handed to the agent only: not stored in clear, not shown to people.
    assert secret not in json.dumps(AgentJob.objects.get(node=source).steps)
    assert secret not in migration.chap_secret and migration.chap_secret
    admin = make_user("Admin", username="root-admin")
    for url in (f"/api/v1/migrations/{migration.pk}", f"/api/v1/agent-jobs/{answer['job']}"):
        body = api(admin).get(url)
        assert body.status_code == 200 and secret not in json.dumps(body.data)

    # The target waits while the source copies; waiting is not being lost.
    assert into.job().json()["action"] == "wait"
    AgentJob.objects.filter(node=target).update(
        last_heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    into.job()
    assert services.fail_lost_jobs() == []

    real = fill_lun(lun_dir, migration)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        answer = out.run(answer["job"], step["index"], copy_result(step["params"], real)).json()
    assert answer["action"] == "poweroff"
    worker_runs(callbacks, "agent.check_migration_copy", migration)
    migration.refresh_from_db()
    assert migration.status == "restoring" and migration.transfer["sha256"] == real
    assert migration.transfer["controller_check"] == real  # hashed on the controller itself

    answer = into.job().json()
    step = answer["step"]
    assert step["action"] == "restore" and step["params"]["sha256"] == real
    assert step["params"]["disk"]["serial"] == "PBNVME01"
    listing = shown(tgtd)
    assert TARGET_ADDR in listing and SOURCE_ADDR not in listing  # the source's turn is over

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        answer = into.run(answer["job"], step["index"], copy_result(step["params"], real)).json()
    assert answer["action"] == "reboot", answer
    worker_runs(callbacks, "agent.teardown_migration", migration)

    source = Node.objects.get(pk=source.pk)
    target = Node.objects.get(pk=target.pk)
    assert source.state == "active" and source.hostname == "db01"
    assert list(source.interfaces.values_list("mac", flat=True)) == [NEW_MAC]
    assert source.serial == "NEW-2" and source.inventory["disks"][0]["serial"] == "PBNVME01"
    assert target.state == "discovered" and target.ever_installed
    assert list(target.interfaces.values_list("mac", flat=True)) == [OLD_MAC]
    assert target.serial == "OLD-1" and target.site_id == source.site_id
    migration.refresh_from_db()
    assert migration.status == "succeeded"
    assert migration.transfer["target_sha256"] == real
    request = ApprovalRequest.objects.get(pk=migration.transfer["deprovision_request"])
    assert (request.action, request.node_id, request.status) == (
        "deprovision",
        target.pk,
        "pending",
    )
    assert request.requested_by.username == "alice"
    audit = AuditEvent.objects.get(action="node.migrated")
    assert audit.changes["hardware"]["from"]["macs"] == [OLD_MAC]
    assert audit.changes["hardware"]["to"]["macs"] == [NEW_MAC]
    # The LUN and its file are gone.
    assert iscsi.iqn(migration) not in shown(tgtd)
    assert not (lun_dir / f"migration-{migration.pk}.img").exists()
    # The old machine's agent token died with its state: it can report nothing more.
    assert into.job().status_code == 401


def test_a_checksum_mismatch_fails_the_target_and_leaves_the_source_active(
    api, client, machines, lun_dir, tgtd, django_capture_on_commit_callbacks
):
    source, target = machines
    migration, out, into = started(api, client, machines)
    copied(out, lun_dir, migration, django_capture_on_commit_callbacks)
    answer = into.job().json()
    step = answer["step"]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        answer = into.run(
            answer["job"], step["index"], copy_result(step["params"], sha="cd" * 32)
        ).json()
    assert answer["action"] == "poweroff"
    worker_runs(callbacks, "agent.teardown_migration", migration)
    source = Node.objects.get(pk=source.pk)
    target = Node.objects.get(pk=target.pk)
    assert source.state == "active" and target.state == "failed"
    assert list(source.interfaces.values_list("mac", flat=True)) == [OLD_MAC]  # untouched
    migration.refresh_from_db()
    assert migration.status == "failed" and "reads back SHA-256" in migration.error
    for node in (source, target):
        last = NodeEvent.objects.filter(node=node, kind="transition").first()
        assert f"migration {migration.pk} failed" in last.message, node
        assert "reads back SHA-256" in last.message
    assert iscsi.iqn(migration) not in shown(tgtd)


def test_a_copy_that_does_not_match_its_lun_fails_before_the_target_writes(
    api, client, machines, lun_dir, tgtd
):
    source, target = machines
    migration, out, into = started(api, client, machines)
    answer = out.job().json()
    out.run(
        answer["job"],
        answer["step"]["index"],
        copy_result(answer["step"]["params"], lun_sha="ef" * 32),
    )
    assert Node.objects.get(pk=source.pk).state == "active"
    assert Node.objects.get(pk=target.pk).state == "failed"
    assert into.job().status_code == 401  # its episode ended: it never restores


def test_a_target_too_small_fails_before_anything_is_written(
    api, client, machines, lun_dir, django_capture_on_commit_callbacks
):
    source, target = machines
    migration = approved(api, source, target)
    import_agent_image()
    out = agent_at(client, OLD_MAC, SOURCE_ADDR)
    into = agent_at(client, NEW_MAC, TARGET_ADDR)
    answer = out.job().json()
    out.run(answer["job"], 0, inventory(ONE_DISK)).json()
    copied(out, lun_dir, migration, django_capture_on_commit_callbacks)
    assert migration.status == "restoring"
    answer = into.job().json()
    answer = into.run(answer["job"], 0, inventory([DISKS[1]])).json()  # 32 MiB < 48 MiB
    assert answer["action"] == "poweroff"
    migration.refresh_from_db()
    assert migration.status == "failed" and "no disk of this machine holds" in migration.error
    assert Node.objects.get(pk=source.pk).state == "active"


def test_a_source_with_several_disks_needs_a_disk_rule(api, client, machines, lun_dir):
    source, target = machines
    migration = approved(api, source, target)
    import_agent_image()
    out = agent_at(client, OLD_MAC, SOURCE_ADDR)
    answer = out.job().json()
    answer = out.run(answer["job"], 0, inventory()).json()
    assert answer["action"] == "poweroff"
    migration.refresh_from_db()
    assert "has 3 disks" in migration.error and migration.status == "failed"
    assert Node.objects.get(pk=source.pk).state == "active"


def test_cancelling_on_the_source_frees_the_target_and_the_target_cannot_cancel(
    api, machines, lun_dir
):
    source, target = machines
    migration = approved(api, source, target)
    alice = make_user("Operator", sites=[source.site], username="carol")
    refused = api(alice).patch(
        f"/api/v1/nodes/{target.pk}/state", {"action": "cancel_migration"}, format="json"
    )
    assert refused.status_code == 409 and f"node {source.pk}" in refused.data["detail"]
    done = api(alice).patch(
        f"/api/v1/nodes/{source.pk}/state",
        {"action": "cancel_migration", "reason": "wrong box"},
        format="json",
    )
    assert done.status_code == 200, done.data
    migration.refresh_from_db()
    assert migration.status == "cancelled"
    assert Node.objects.get(pk=source.pk).state == "active"
    assert Node.objects.get(pk=target.pk).state == "discovered"


def test_one_machine_cannot_act_for_the_other(api, client, machines, lun_dir):
    """The target's agent cannot report the source's copy, nor read its CHAP secret."""
    source, target = machines
    migration, out, into = started(api, client, machines)
    out_job = AgentJob.objects.get(node=source)
    forged = into.step(out_job.pk, 1, "started")
    assert forged.status_code == 404
    assert into.job().json()["action"] == "wait"  # no step, no secret for it yet
    assert "chap" not in json.dumps(into.job().json())
    migration.refresh_from_db()
    assert migration.status == "copying"


def test_a_second_host_with_a_copy_of_the_token_gets_neither_the_secret_nor_the_lun(
    api, client, machines, lun_dir, tgtd
):
    """A host that learned the source's token (or spoofed its MAC later) is refused:
    the job belongs to the address that first spoke for it, which alone the LUN admits."""
    source, target = machines
    migration, out, into = started(api, client, machines)
    thief = elsewhere(out)
    answer = thief.job()
    assert answer.status_code == 403 and SOURCE_ADDR in answer.json()["detail"]
    assert "chap" not in answer.content.decode()
    job = AgentJob.objects.get(node=source)
    assert thief.step(job.pk, 1, "started").status_code == 403
    assert "10.99.0.166" not in shown(tgtd)
    assert out.job().json()["step"]["action"] == "copy_out"  # the real machine goes on


def test_a_source_that_lies_about_its_copy_fails_the_migration(
    api, client, machines, lun_dir, tgtd, django_capture_on_commit_callbacks
):
    """The controller hashes the LUN itself: a claimed checksum that is not the copy's
    never reaches the target."""
    source, target = machines
    migration, out, into = started(api, client, machines)
    answer = copied(out, lun_dir, migration, django_capture_on_commit_callbacks, sha="ab" * 32)
    assert answer["action"] == "poweroff"
    assert migration.status == "failed" and "the copy on the controller hashes" in migration.error
    agent_migration.teardown(migration.pk)  # queued when it ended (as in the test above)
    assert Node.objects.get(pk=source.pk).state == "active"
    assert Node.objects.get(pk=target.pk).state == "failed"
    assert iscsi.iqn(migration) not in shown(tgtd)


def test_a_second_migration_of_the_same_machine_is_refused(api, machines, site, lun_dir):
    source, target = machines
    approved(api, source, target)
    other = make_node("active", site=site)
    alice = make_user("Operator", sites=[site], username="dave")
    answer = api(alice).post(
        "/api/v1/migrate", {"source": other.pk, "target": target.pk}, format="json"
    )
    assert answer.status_code == 400 and "is migrating" in str(answer.data["target"])


def test_a_node_marked_migrating_without_a_migration_boots_its_disk(client):
    """Nodes put in `migrating` before migration was built have no Migration: their
    machine boots its own disk, saying how to end it, instead of an agent with no job."""
    make_node("migrating", macs=[OLD_MAC], hostname="legacy01")
    import_agent_image()
    script = client.get(f"/boot/ipxe?mac={OLD_MAC}").content.decode()
    assert "pureboot-agent" not in script and "cancel_migration" in script
    assert "sanboot" in script or "exit" in script


def test_an_approver_who_cannot_see_the_target_machine_cannot_approve(api, site, lun_dir):
    other = Site.objects.create(name="Other", slug="other")
    source = make_node("active", site=site, macs=[OLD_MAC], hostname="db01")
    target = make_node("discovered", site=other, macs=[NEW_MAC])
    alice = make_user("Operator", sites=[site, other], username="alice")
    _, answer = ask(api, source, target, user=alice)
    assert answer.status_code == 202, answer.data
    request_id = answer.data["approval_request"]["id"]
    bob = make_user("Operator", sites=[site], username="bob")  # sees the source only
    refused = api(bob).post(f"/api/v1/approvals/{request_id}/approve", {}, format="json")
    assert refused.status_code in (403, 404), refused.data
    assert Node.objects.get(pk=source.pk).state == "active"
    carol = make_user("Operator", sites=[site, other], username="carol")
    assert (
        api(carol).post(f"/api/v1/approvals/{request_id}/approve", {}, format="json").status_code
        == 200
    )
    assert Node.objects.get(pk=target.pk).state == "migrating"


def test_a_target_that_boots_differently_is_refused_before_anything_is_written(
    api, client, machines, lun_dir, django_capture_on_commit_callbacks
):
    """A UEFI system copied onto a BIOS machine would check out and never boot."""
    source, target = machines
    migration = approved(api, source, target)
    import_agent_image()
    out = agent_at(client, OLD_MAC, SOURCE_ADDR)
    into = agent_at(client, NEW_MAC, TARGET_ADDR)
    answer = out.job().json()
    uefi = {**inventory(ONE_DISK), "firmware": {"mode": "uefi", "secure_boot": "disabled"}}
    out.run(answer["job"], 0, uefi)
    copied(out, lun_dir, migration, django_capture_on_commit_callbacks)
    answer = into.job().json()
    answer = into.run(answer["job"], 0, inventory(BIG_DISK)).json()  # BIOS
    assert answer["action"] == "poweroff"
    migration.refresh_from_db()
    assert migration.status == "failed" and "boots uefi, this one bios" in migration.error
    assert Node.objects.get(pk=source.pk).state == "active"


def test_the_lun_file_is_readable_by_the_controller_only_and_outlived_luns_are_swept(
    api, client, machines, lun_dir, tgtd
):
    source, target = machines
    migration, out, into = started(api, client, machines)
    path = lun_dir / f"migration-{migration.pk}.img"
    assert path.stat().st_mode & 0o777 == 0o600 and lun_dir.stat().st_mode & 0o777 == 0o700
    assert agent_migration.sweep() == []  # running: kept
    Migration.objects.filter(pk=migration.pk).update(status="failed")  # its teardown was lost
    assert agent_migration.sweep() == [migration.pk]
    assert not path.exists() and iscsi.iqn(migration) not in shown(tgtd)


def test_heartbeats_and_logs_from_another_address_are_refused(api, client, machines, lun_dir):
    source, target = machines
    migration, out, into = started(api, client, machines)
    job = AgentJob.objects.get(node=source)
    thief = elsewhere(out)
    for path, body in (("heartbeat", {"step": 1, "detail": "x"}), ("log", {"lines": ["x"]})):
        answer = thief.client.post(
            f"/api/v1/agent/jobs/{job.pk}/{path}", json.dumps(body), content_type="application/json"
        )
        assert answer.status_code == 403, (path, answer.content)
    assert not job.log_lines.exists()
