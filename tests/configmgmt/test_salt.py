"""Salt: minion keys follow the lifecycle, and config_run applies a state (real Salt)."""

import secrets

import pytest

from audit.models import AuditEvent
from configmgmt import salt, services
from configmgmt.models import ConfigRun, Registration
from nodes.models import Node
from tests.factories import make_node

from .saltstack import SaltStack
from .test_config_run import finished_install, store_credential, workflow_with


@pytest.fixture(scope="module")
def salt_master(tmp_path_factory):
    """One master and salt-api for this module's tests (they start in ~10 s)."""
    stack = SaltStack(tmp_path_factory.mktemp("salt"), "saltapi", secrets.token_urlsafe(16))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def salt_stack(salt_master, settings, db):
    store_credential("salt-api", "saltapi", password=salt_master.password)
    settings.PUREBOOT_SALT_API_URL = salt_master.url
    settings.PUREBOOT_SALT_API_CREDENTIAL = "salt-api"
    settings.PUREBOOT_SALT_API_EAUTH = "file"
    return salt_master


def test_key_accepted_when_installed_and_deleted_when_retired(salt_stack, site_a, tmp_path):
    (salt_stack.folder / "states" / "web.sls").write_text(
        f"{tmp_path / 'salted.txt'}:\n  file.managed:\n    - contents: salted by PureBoot\n"
    )
    workflow = workflow_with("tool: salt\nstate: web")
    node = make_node("installed", site=site_a, hostname="web1.example.net", workflow=workflow)
    make_node("pending", site=site_a, hostname="db1.example.net")
    salt_stack.minion("web1.example.net")
    salt_stack.minion("db1.example.net")  # not installed yet: its key must wait
    salt_stack.minion("stranger.example.net")  # no node of PureBoot's: never accepted
    for minion in ("web1.example.net", "db1.example.net", "stranger.example.net"):
        salt_stack.wait_for_key(minion)

    assert services.sync_salt()["accepted"] == ["web1.example.net"]
    keys = salt_stack.keys()
    assert keys["minions"] == ["web1.example.net"]
    assert set(keys["minions_pre"]) == {"db1.example.net", "stranger.example.net"}
    assert Registration.objects.get(node=node, system="salt").present

    # The workflow's config_run applies the state once the minion answers.
    salt_stack.wait_for_ping("web1.example.net")
    run = finished_install(node, workflow)
    services.run_due_config_steps()
    config_run = ConfigRun.objects.get(workflow_run=run)
    assert config_run.status == "succeeded", config_run.output
    assert (tmp_path / "salted.txt").read_text() == "salted by PureBoot\n"

    Node.objects.filter(pk=node.pk).update(state="retired")
    assert services.sync_salt()["deleted"] == ["web1.example.net"]
    assert "web1.example.net" not in sum(salt_stack.keys().values(), [])
    assert not Registration.objects.get(node=node, system="salt").present
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert "configmgmt.salt.registered" in actions and "configmgmt.salt.removed" in actions
    everything = " ".join(str(e.details) + e.message for e in AuditEvent.objects.all())
    assert salt_stack.password not in everything + config_run.output


def test_wrong_salt_password_changes_nothing(salt_stack, site_a, settings):
    store_credential("salt-wrong", "saltapi", password="not-the-password")
    settings.PUREBOOT_SALT_API_CREDENTIAL = "salt-wrong"
    make_node("installed", site=site_a, hostname="web2.example.net")
    salt_stack.minion("web2.example.net")
    salt_stack.wait_for_key("web2.example.net")
    assert services.sync_salt() == {"accepted": [], "deleted": [], "waiting": []}
    assert "web2.example.net" in salt_stack.keys()["minions_pre"]


def test_key_follows_a_rename_and_output_is_redacted(salt_stack, site_a):
    (salt_stack.folder / "states" / "leaky.sls").write_text(
        "leak:\n  test.configurable_test_state:\n    - changes: false\n    - result: true\n"
        f"    - comment: 'api_key=s3cr3t-value and {salt_stack.password}'\n"
    )
    workflow = workflow_with("tool: salt\nstate: leaky", name="leaky")
    node = make_node("installed", site=site_a, hostname="re1.example.net", workflow=workflow)
    finished_install(node, workflow)
    salt_stack.minion("re1.example.net")
    salt_stack.wait_for_key("re1.example.net")
    assert services.sync_salt()["accepted"] == ["re1.example.net"]

    # Salt's output is stored redacted: the salt-api password and what the audit redactor hides.
    salt_stack.wait_for_ping("re1.example.net")
    run = finished_install(node, workflow)
    services.run_due_config_steps()
    output = ConfigRun.objects.get(workflow_run=run).output
    assert "s3cr3t-value" not in output and salt_stack.password not in output
    assert "[redacted]" in output

    # Renamed: the old name's key goes (by the registered name), the new one waits.
    Node.objects.filter(pk=node.pk).update(hostname="re2.example.net")
    assert services.sync_salt() == {
        "accepted": [],
        "deleted": ["re1.example.net"],
        "waiting": ["re2.example.net"],
    }
    assert "re1.example.net" not in salt_stack.keys()["minions"]


def test_a_key_accepted_before_pureboot_is_never_deleted(salt_stack, site_a):
    salt_stack.minion("old.example.net")
    salt_stack.wait_for_key("old.example.net")
    salt.connect("user:test").accept("old.example.net")
    node = make_node("installed", site=site_a, hostname="old.example.net")
    assert services.sync_salt()["accepted"] == []
    registration = Registration.objects.get(node=node, system="salt")
    assert registration.present and registration.preexisting
    Node.objects.filter(pk=node.pk).update(state="retired")
    assert services.sync_salt()["deleted"] == []
    assert "old.example.net" in salt_stack.keys()["minions"]
