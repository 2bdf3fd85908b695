"""Workflows' config_run step: validated at save, run once by the worker after the install."""

import getpass
import re
import secrets
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from configmgmt import ansible, chef, inventory, salt, services
from configmgmt.models import ConfigRun, Registration
from credentials import services as credentials
from credentials.errors import StoreError
from credentials.services import UndecryptableSecret
from nodes.models import Node, NodeEvent
from tests.factories import make_node, make_workflow, sealed
from workflows.definitions import DefinitionError
from workflows.models import WorkflowRun

from .sshd import Sshd, keypair

WORKFLOW = """\
name: {name}
tasks:
  - type: pxe_boot
    kernel: /boot/ubuntu/vmlinuz
    initrd: /boot/ubuntu/initrd
  - type: config_run
{step}
"""

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: leave a mark the test can read
      ansible.builtin.copy:
        dest: "{{{{ mark }}}}"
        content: "{{{{ pureboot_name }}}} at {{{{ pureboot_site }}}}: {{{{ greeting }}}}\\n"
    - name: show what the node reported
      ansible.builtin.copy:
        dest: "{{{{ mark }}}}.model"
        content: "{{{{ pureboot_model }}}}|{{{{ disk }}}}|{{{{ greeting }}}}"
      vars:
        disk: "{{{{ pureboot_hardware.disks[0].model }}}}"
"""


def workflow_with(step: str, name: str = "with-config"):
    indented = "\n".join(f"    {line}" for line in step.strip().splitlines())
    return make_workflow(name, WORKFLOW.format(name=name, step=indented))


def finished_install(node, workflow) -> WorkflowRun:
    version = workflow.latest_version
    return WorkflowRun.objects.create(
        node=node,
        version=version,
        status="succeeded",
        finished_at=timezone.now() - timedelta(minutes=1),
        token_nonce=secrets.token_hex(16),
        steps=[
            {"index": i, "type": t["type"], "status": "done" if i == 0 else "pending"}
            for i, t in enumerate(version.tasks)
        ],
    )


def store_credential(name: str, username: str, private_key: str = "", password: str = ""):
    approval = sealed("credential.create", f"credential:new:{name}", "")
    return credentials.create_credential(
        "user:test-admin",
        {"name": name, "kind": "bmc", "username": username},
        {"private_key": private_key, "password": password},
        approval=approval,
    )


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("tool: puppet", "config_run with tool puppet is not available yet"),
        ("tool: chef", "config_run with tool chef is not available yet"),
        ("tool: ansible\nplaybook: ../etc/shadow.yml\ncredential: k", "without '..'"),
        ("tool: ansible\nplaybook: /abs.yml\ncredential: k", "relative to"),
        ("tool: ansible\nplaybook: site.yml", "names the stored SSH credential"),
        ("tool: salt\nstate: web\nplaybook: site.yml", "not a parameter of config_run with salt"),
        ("tool: salt\nstate: 'web; rm -rf /'", "is a Salt state name"),
        ("tool: terraform", "must be one of ansible, salt, puppet, chef"),
        (
            "tool: ansible\nplaybook: s.yml\ncredential: k\nextra_vars: {ansible_user: root}",
            "extra_vars.ansible_user: ansible_* variables are set by PureBoot",
        ),
        (
            "tool: ansible\nplaybook: s.yml\ncredential: k\n"
            "extra_vars: {x: \"{{ lookup('pipe','id') }}\"}",
            "extra_vars.x: holds a Jinja2 template marker",
        ),
        (
            "tool: ansible\nplaybook: s.yml\ncredential: k\n"
            "extra_vars: {deep: {list: [ok, '{% if 1 %}x{% endif %}']}}",
            "extra_vars.deep.list[1]: holds a Jinja2 template marker",
        ),
        (
            "tool: ansible\nplaybook: s.yml\ncredential: k\nextra_vars: {note: '{# c #}'}",
            "extra_vars.note: holds a Jinja2 template marker",
        ),
    ],
)
def test_refused_at_save(db, step, message):
    with pytest.raises(DefinitionError, match=re.escape(message)):
        workflow_with(step)


def test_ansible_playbook_runs_over_real_ssh(db, tmp_path, site_a, settings):
    folder = tmp_path / "sshd"
    folder.mkdir()
    private_key, public_key = keypair(folder, "user_key")
    server = Sshd(folder, public_key)
    # A short path: the payload must fit the model column (100 characters on PostgreSQL).
    hostile = Path(tempfile.mkdtemp(prefix="pb")) / "t"
    payload = f"{{{{ lookup('pipe','touch {hostile}') }}}}"
    assert len(payload) <= 100
    try:
        books = tmp_path / "playbooks"
        books.mkdir()
        (books / "site.yml").write_text(PLAYBOOK.format())
        settings.PUREBOOT_ANSIBLE_PLAYBOOK_DIR = books
        store_credential("ssh-deploy", getpass.getuser(), private_key)
        mark = tmp_path / "configured.txt"
        workflow = workflow_with(
            "tool: ansible\nplaybook: site.yml\ncredential: ssh-deploy\n"
            f"port: {server.port}\nextra_vars: {{greeting: hello, mark: '{mark}'}}"
        )
        node = make_node(
            "installed",
            site=site_a,
            hostname="web1.example.net",
            # What the agent reported (its own word): never the address used here.
            inventory={
                "network": {"address": "127.0.0.1/8"},
                "disks": [{"path": "/dev/vda", "model": payload}],
            },
            metadata={"addresses": [server.address]},
            model=payload,
            workflow=workflow,
        )
        run = finished_install(node, workflow)

        assert services.run_due_config_steps() != []
        config_run = ConfigRun.objects.get(workflow_run=run)
        assert config_run.status == "succeeded", config_run.output
        assert mark.read_text() == "web1.example.net at site-a: hello\n"
        # The node's own facts are text to Ansible: printed, never run.
        assert not hostile.exists()
        assert Path(f"{mark}.model").read_text() == f"{payload}|{payload}|hello"
        assert "PRIVATE KEY" not in config_run.output
        run.refresh_from_db()
        assert run.steps[1]["status"] == "done"
        assert NodeEvent.objects.filter(node=node, message="config_run ansible succeeded").exists()
        actions = set(AuditEvent.objects.values_list("action", flat=True))
        assert {"credential.reveal", "configmgmt.config_run.succeeded"} <= actions
        # Once per install: the next pass has nothing to do.
        assert services.run_due_config_steps() == []

        # Extra variables are passed unsafe too (even ones the save check would refuse).
        params = {
            "playbook": "site.yml",
            "credential": "ssh-deploy",
            "port": server.port,
            "timeout": 120,
            "extra_vars": {"mark": str(mark), "greeting": payload},
        }
        ansible.run_playbook(node, params, "user:test")
        assert not hostile.exists()
        assert Path(f"{mark}.model").read_text().endswith(f"|{payload}")
    finally:
        server.stop()


def test_failed_playbook_is_recorded(db, tmp_path, site_a, settings):
    settings.PUREBOOT_ANSIBLE_PLAYBOOK_DIR = tmp_path
    store_credential("ssh-deploy", "nobody", "not a key")
    workflow = workflow_with("tool: ansible\nplaybook: missing.yml\ncredential: ssh-deploy")
    node = make_node("installed", site=site_a, hostname="web2.example.net", workflow=workflow)
    run = finished_install(node, workflow)
    services.run_due_config_steps()
    config_run = ConfigRun.objects.get(workflow_run=run)
    assert config_run.status == "failed"
    assert "playbook missing.yml does not exist" in config_run.output
    run.refresh_from_db()
    assert run.steps[1]["status"] == "failed"


def test_no_run_for_a_node_not_installed_or_a_superseded_install(db, tmp_path, site_a):
    workflow = workflow_with("tool: ansible\nplaybook: site.yml\ncredential: k")
    failed = make_node("failed", site=site_a, hostname="f.example.net", workflow=workflow)
    finished_install(failed, workflow)
    node = make_node("installed", site=site_a, hostname="n.example.net", workflow=workflow)
    finished_install(node, workflow)
    WorkflowRun.objects.create(node=node, version=workflow.latest_version, token_nonce="m" * 32)
    assert services.due_config_steps() == []


def test_a_racing_worker_does_not_run_a_step_twice(db, tmp_path, site_a, settings):
    settings.PUREBOOT_ANSIBLE_PLAYBOOK_DIR = tmp_path
    workflow = workflow_with("tool: ansible\nplaybook: site.yml\ncredential: k")
    node = make_node("installed", site=site_a, hostname="r.example.net", workflow=workflow)
    run = finished_install(node, workflow)
    (due,) = services.due_config_steps()
    assert services.run_config_step(*due) is not None
    # A second worker that read the same due list before the first one claimed it.
    assert services.run_config_step(*due) is None
    assert ConfigRun.objects.filter(workflow_run=run).count() == 1


@pytest.mark.parametrize(
    ("metadata", "reported", "expected"),
    [
        ({"addresses": ["127.0.0.1"]}, "192.0.2.7/24", ""),  # an operator's list is the list
        ({"addresses": ["169.254.1.1", "::", "224.0.0.1", "192.0.2.9"]}, "", "192.0.2.9"),
        ({}, "192.0.2.7/24", "192.0.2.7"),  # the agent's word only without a list
        ({}, "127.0.0.1/8", "n.example.net"),
        ({}, "fe80::1/64", "n.example.net"),
    ],
)
def test_ansible_host_is_never_a_special_address(db, metadata, reported, expected):
    node = make_node(
        "installed",
        hostname="n.example.net",
        metadata=metadata,
        inventory={"network": {"address": reported}} if reported else {},
    )
    assert inventory.ansible_host(node) == expected


def test_a_loopback_address_is_refused(db, tmp_path, site_a, settings):
    settings.PUREBOOT_ANSIBLE_PLAYBOOK_DIR = tmp_path
    (tmp_path / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    store_credential("ssh-deploy", "nobody", "not a key")
    workflow = workflow_with("tool: ansible\nplaybook: site.yml\ncredential: ssh-deploy")
    for index, address in enumerate(("127.0.0.1", "169.254.9.9")):
        node = make_node(
            "installed",
            site=site_a,
            hostname=f"lo{index}.example.net",
            inventory={"network": {"address": address}},
            workflow=workflow,
        )
        run = finished_install(node, workflow)
        Node.objects.filter(pk=node.pk).update(hostname="")
        services.run_due_config_steps()
        config_run = ConfigRun.objects.get(workflow_run=run)
        assert config_run.status == "failed"
        assert "has no address or host name to connect to" in config_run.output


def test_node_state_rechecked_before_the_run(db, tmp_path, site_a, settings):
    settings.PUREBOOT_ANSIBLE_PLAYBOOK_DIR = tmp_path
    workflow = workflow_with("tool: ansible\nplaybook: site.yml\ncredential: k")
    node = make_node("installed", site=site_a, hostname="g.example.net", workflow=workflow)
    run = finished_install(node, workflow)
    (due,) = services.due_config_steps()
    Node.objects.filter(pk=node.pk).update(state="reprovision")  # after the list was read
    assert services.run_config_step(*due) is None
    assert not ConfigRun.objects.filter(workflow_run=run).exists()


def test_a_run_its_worker_left_running_is_failed(db, site_a):
    workflow = workflow_with("tool: ansible\nplaybook: site.yml\ncredential: k\ntimeout: 60")
    node = make_node("installed", site=site_a, hostname="d.example.net", workflow=workflow)
    run = finished_install(node, workflow)
    long_ago = timezone.now() - timedelta(seconds=60) - services.STALE_MARGIN
    stale = ConfigRun.objects.create(
        node=node, workflow_run=run, step=1, tool="ansible", started_at=long_ago
    )
    other_run = finished_install(make_node("installed", hostname="e.example.net"), workflow)
    fresh = ConfigRun.objects.create(node=node, workflow_run=other_run, step=1, tool="ansible")
    assert services.reconcile()["stale_runs"] == [stale.pk]
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == "failed" and stale.finished_at is not None
    assert "marked failed" in stale.output
    assert fresh.status == "running"
    run.refresh_from_db()
    assert run.steps[1]["status"] == "failed"


def test_credential_store_errors_are_recorded_and_the_pass_goes_on(
    db, site_a, settings, monkeypatch
):
    settings.PUREBOOT_SALT_API_URL = "http://127.0.0.1:9"
    settings.PUREBOOT_CHEF_SERVER_URL = "http://127.0.0.1:9"
    node = make_node("installed", site=site_a, hostname="s.example.net")

    def store_down(actor):
        raise StoreError("vault at https://vault.example is unreachable")

    def no_ca(actor):
        raise OSError("Could not find a suitable TLS CA certificate bundle")

    monkeypatch.setattr(salt, "connect", store_down)
    monkeypatch.setattr(chef, "connect", no_ca)
    done = services.reconcile()
    assert done["salt"] == {"accepted": [], "deleted": [], "waiting": []}
    assert done["chef"] == {"created": [], "deleted": []}
    errors = dict(Registration.objects.filter(node=node).values_list("system", "error"))
    assert "vault at https://vault.example is unreachable" in errors["salt"]
    assert "CA certificate bundle" in errors["chef"]

    # A failure the passes do not expect still leaves the next pass to run.
    def broken(actor):
        raise UndecryptableSecret("no key decrypts it")

    monkeypatch.setattr(salt, "connect", broken)
    monkeypatch.setattr(services, "run_due_config_steps", lambda: 1 / 0)
    done = services.reconcile()
    assert done["config_runs"] is None
    assert "no key decrypts it" in Registration.objects.get(node=node, system="salt").error
