"""Chef: installed nodes registered (node + client), retired ones removed; signed requests.

Against tests/configmgmt/fake_chef.py, a fake Chef Infra Server that
verifies every request's Mixlib-Authentication 1.3 signature.
"""

import pytest

from audit.models import AuditEvent
from configmgmt import chef, services
from configmgmt.models import Registration
from credentials import services as credentials
from nodes.models import Node
from tests.factories import make_node, make_workflow

from .fake_chef import FakeChef, new_key, pem
from .test_config_run import finished_install, store_credential


@pytest.fixture
def chef_server(db, settings):
    key = new_key()
    server = FakeChef("acme", {"pureboot": key.public_key()})
    store_credential("chef-api", "pureboot", pem(key))
    settings.PUREBOOT_CHEF_SERVER_URL = server.url
    settings.PUREBOOT_CHEF_ORG = "acme"
    settings.PUREBOOT_CHEF_CREDENTIAL = "chef-api"
    try:
        yield server
    finally:
        server.stop()


def test_register_installed_and_remove_retired(chef_server, site_a):
    node = make_node("installed", site=site_a, hostname="web1.example.net")
    make_node("pending", site=site_a, hostname="db1.example.net")
    assert services.sync_chef() == {"created": ["web1.example.net"], "deleted": []}
    assert chef_server.refused == []
    assert set(chef_server.nodes) == set(chef_server.clients) == {"web1.example.net"}
    attributes = chef_server.nodes["web1.example.net"]["normal"]["pureboot"]
    assert attributes["pureboot_site"] == "site-a"
    registration = Registration.objects.get(node=node, system="chef")
    assert registration.present
    # The new client's key is kept encrypted, never in the clear.
    assert "PRIVATE KEY" not in registration.client_key_ciphertext
    assert "PRIVATE KEY" in credentials.decrypt(registration.client_key_ciphertext)
    # Nothing left to do: the next pass asks nothing of the server.
    assert services.sync_chef() == {"created": [], "deleted": []}

    Node.objects.filter(pk=node.pk).update(state="retired")
    assert services.sync_chef() == {"created": [], "deleted": ["web1.example.net"]}
    assert chef_server.nodes == {} and chef_server.clients == {}
    registration.refresh_from_db()
    assert not registration.present and registration.client_key_ciphertext == ""
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"configmgmt.chef.registered", "configmgmt.chef.removed"} <= actions


def test_wrong_key_is_refused_and_recorded(chef_server, site_a, settings):
    store_credential("chef-wrong", "pureboot", pem(new_key()))
    settings.PUREBOOT_CHEF_CREDENTIAL = "chef-wrong"
    node = make_node("installed", site=site_a, hostname="web1.example.net")
    assert services.sync_chef() == {"created": [], "deleted": []}
    assert chef_server.refused == ["signature does not verify"]
    registration = Registration.objects.get(node=node, system="chef")
    assert not registration.present
    assert "creating node web1.example.net answered HTTP 401" in registration.error


def test_signature_covers_path_and_body(chef_server):
    key = new_key()
    chef_server.users["other"] = key.public_key()
    headers = chef.signed_headers(key, "other", "POST", "/organizations/acme/nodes", b"{}")
    assert chef_server.verify("POST", "/organizations/acme/nodes", headers, b"{}") is None
    assert chef_server.verify("POST", "/organizations/acme/clients", headers, b"{}")
    assert chef_server.verify("POST", "/organizations/acme/nodes", headers, b"{ }")
    assert chef.canonical_path("/organizations//acme/nodes/?x=1") == "/organizations/acme/nodes"


def test_malformed_key_is_an_error_not_a_crash(db, settings, site_a):
    store_credential("chef-bad", "pureboot", "-----BEGIN RSA PRIVATE KEY-----\nnope\n")
    settings.PUREBOOT_CHEF_SERVER_URL = "http://127.0.0.1:9"
    settings.PUREBOOT_CHEF_ORG = "acme"
    settings.PUREBOOT_CHEF_CREDENTIAL = "chef-bad"
    make_node("installed", site=site_a, hostname="web1.example.net")
    assert services.sync_chef() == {"created": [], "deleted": []}


def test_registration_follows_rename_reinstall_and_deletion(chef_server, site_a, db):
    node = make_node("installed", site=site_a, hostname="web1.example.net")
    services.sync_chef()
    first_key = Registration.objects.get(node=node, system="chef").client_key_ciphertext

    # Renamed: the old name's node and client go, the new name is registered.
    Node.objects.filter(pk=node.pk).update(hostname="web9.example.net")
    assert services.sync_chef() == {
        "created": ["web9.example.net"],
        "deleted": ["web1.example.net"],
    }
    assert set(chef_server.nodes) == set(chef_server.clients) == {"web9.example.net"}

    # Reinstalled: the pair goes while it installs, and a new one (a new key) comes after.
    Node.objects.filter(pk=node.pk).update(state="reprovision")
    assert services.sync_chef() == {"created": [], "deleted": ["web9.example.net"]}
    assert chef_server.clients == {}
    Node.objects.filter(pk=node.pk).update(state="installed")
    assert services.sync_chef() == {"created": ["web9.example.net"], "deleted": []}
    registration = Registration.objects.get(node=node, system="chef")
    assert registration.present and registration.client_key_ciphertext not in ("", first_key)

    # Installed again between two passes (PureBoot never saw it reinstalling): redone too.
    workflow = make_workflow("again")
    first = finished_install(node, workflow)
    services.sync_chef()
    Registration.objects.filter(pk=registration.pk).update(install_run=first.pk)
    second = finished_install(node, workflow)
    assert services.sync_chef() == {
        "created": ["web9.example.net"],
        "deleted": ["web9.example.net"],
    }
    assert Registration.objects.get(pk=registration.pk).install_run == second.pk

    # Deleted: the registration outlives the node until its pair is gone.
    node.delete()
    assert services.sync_chef() == {"created": [], "deleted": ["web9.example.net"]}
    assert chef_server.nodes == {} and not Registration.objects.exists()


def test_a_pair_that_existed_before_pureboot_is_never_deleted(chef_server, site_a, db):
    chef_server.nodes["legacy.example.net"] = {"name": "legacy.example.net"}
    chef_server.clients["legacy.example.net"] = {"name": "legacy.example.net"}
    node = make_node("installed", site=site_a, hostname="legacy.example.net")
    services.sync_chef()
    registration = Registration.objects.get(node=node, system="chef")
    assert registration.present and registration.preexisting
    Node.objects.filter(pk=node.pk).update(state="retired")
    assert services.sync_chef() == {"created": [], "deleted": []}
    assert "legacy.example.net" in chef_server.nodes
    assert "legacy.example.net" in chef_server.clients
    assert not Registration.objects.get(pk=registration.pk).present
