"""Config runs and registrations in the admin: read-only, scoped, no Chef key."""

from configmgmt.models import Registration
from credentials import services as credentials
from tests.factories import make_node, make_user


def test_operator_sees_own_sites_registrations_without_keys(client, site_a, site_b, db):
    mine = make_node("installed", site=site_a, hostname="web1.example.net")
    other = make_node("installed", site=site_b, hostname="b-secret.example.net")
    key = "-----BEGIN RSA PRIVATE KEY-----\nabc\n"
    for node in (mine, other):
        Registration.objects.create(
            node=node,
            system="chef",
            name=node.hostname,
            present=True,
            client_key_ciphertext=credentials.encrypt(key),
        )
    operator = make_user("Operator", sites=[site_a])
    operator.is_staff = True
    operator.save()
    client.force_login(operator)
    page = client.get("/admin/configmgmt/registration/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "web1.example.net" in text and "b-secret" not in text
    mine_id = Registration.objects.get(node=mine).pk
    detail = client.get(f"/admin/configmgmt/registration/{mine_id}/change/").content.decode()
    assert "PRIVATE KEY" not in detail and "gAAAA" not in detail
    other_id = Registration.objects.get(node=other).pk
    assert client.get(f"/admin/configmgmt/registration/{other_id}/change/").status_code == 302
    probe = client.get("/admin/configmgmt/registration/?client_key_ciphertext__startswith=g")
    assert probe.status_code in (302, 400)
