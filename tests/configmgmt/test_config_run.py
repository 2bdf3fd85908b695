"""Workflows' config_run step: validated at save, run once by the worker after the install."""

import getpass
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from configmgmt import services
from configmgmt.models import ConfigRun
from credentials import services as credentials
from nodes.models import NodeEvent
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
        token_nonce="n" * 32,
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
    ],
)
def test_refused_at_save(db, step, message):
    with pytest.raises(DefinitionError, match=message.replace("(", r"\(")):
        workflow_with(step)


def test_ansible_playbook_runs_over_real_ssh(db, tmp_path, site_a, settings):
    folder = tmp_path / "sshd"
    folder.mkdir()
    private_key, public_key = keypair(folder, "user_key")
    server = Sshd(folder, public_key)
    try:
        books = tmp_path / "playbooks"
        books.mkdir()
        (books / "site.yml").write_text(PLAYBOOK.format())
        settings.PUREBOOT_ANSIBLE_PLAYBOOK_DIR = books
        store_credential("ssh-deploy", getpass.getuser(), private_key)
        mark = tmp_path / "configured.txt"
        workflow = workflow_with(
            "tool: ansible\nplaybook: site.yml\ncredential: ssh-deploy\n"
            f"port: {server.port}\nextra_vars: {{greeting: hello, mark: '{mark}', "
            "ansible_python_interpreter: /usr/bin/python3}"
        )
        node = make_node(
            "installed",
            site=site_a,
            hostname="web1.example.net",
            metadata={"addresses": ["127.0.0.1"]},
            workflow=workflow,
        )
        run = finished_install(node, workflow)

        assert services.run_due_config_steps() != []
        config_run = ConfigRun.objects.get(workflow_run=run)
        assert config_run.status == "succeeded", config_run.output
        assert mark.read_text() == "web1.example.net at site-a: hello\n"
        assert "PRIVATE KEY" not in config_run.output
        run.refresh_from_db()
        assert run.steps[1]["status"] == "done"
        assert NodeEvent.objects.filter(node=node, message="config_run ansible succeeded").exists()
        actions = set(AuditEvent.objects.values_list("action", flat=True))
        assert {"credential.reveal", "configmgmt.config_run.succeeded"} <= actions
        # Once per install: the next pass has nothing to do.
        assert services.run_due_config_steps() == []
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
