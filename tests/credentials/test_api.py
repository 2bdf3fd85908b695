"""/api/v1/credentials: secrets go in and never come out; roles decide who sees what."""

from __future__ import annotations

import json

import pytest

from audit.models import AuditEvent
from pureboot.models import Credential

from .conftest import PLAINTEXT

pytestmark = pytest.mark.django_db

URL = "/api/v1/credentials"


def _no_secret(response, credential=None):
    body = response.content.decode()
    assert PLAINTEXT not in body and "plainkey" not in body
    assert "ciphertext" not in body
    if credential is not None:
        credential.refresh_from_db()
        assert credential.password_ciphertext not in body


def test_admin_create_list_detail_update_never_return_secrets(api, admin_user, keys):
    client = api(admin_user)
    created = client.post(
        URL,
        {"name": "ad-join", "kind": "domain_join", "username": "joiner", "password": PLAINTEXT},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.data["has_password"] is True and created.data["has_private_key"] is False
    assert "password" not in created.data
    credential = Credential.objects.get(name="ad-join")
    _no_secret(created, credential)
    for response in (
        client.get(URL),
        client.get(f"{URL}/{credential.pk}"),
        client.patch(f"{URL}/{credential.pk}", {"password": "n3w-" + PLAINTEXT}, format="json"),
        client.patch(f"{URL}/{credential.pk}", {"description": "AD"}, format="json"),
    ):
        assert response.status_code == 200, response.content
        _no_secret(response, credential)
    assert client.get(f"{URL}/{credential.pk}").data["description"] == "AD"
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("credential.update") == 2
    deleted = client.delete(f"{URL}/{credential.pk}")
    assert deleted.status_code == 204
    assert AuditEvent.objects.filter(action="credential.delete").count() == 1


def test_duplicate_name_is_400(api, admin_user, credential):
    response = api(admin_user).post(
        URL, {"name": "ovirt-prod", "kind": "hypervisor", "username": "x"}, format="json"
    )
    assert response.status_code == 400
    assert "name" in response.data


def test_operator_lists_names_only_and_cannot_write(api, operator, credential):
    client = api(operator)
    response = client.get(URL)
    assert response.status_code == 200
    assert response.data["results"] == [
        {"id": credential.pk, "name": "ovirt-prod", "kind": "hypervisor"}
    ]
    _no_secret(response)
    assert client.post(URL, {"name": "x", "kind": "bmc", "username": "u"}).status_code == 403
    assert client.patch(f"{URL}/{credential.pk}", {"password": "x"}).status_code == 403
    assert client.delete(f"{URL}/{credential.pk}").status_code == 403


def test_auditor_reads_metadata_only(api, auditor, credential):
    client = api(auditor)
    response = client.get(f"{URL}/{credential.pk}")
    assert response.status_code == 200
    assert response.data["username"] == "admin@internal"
    assert response.data["has_password"] is True
    _no_secret(response, credential)
    assert client.patch(f"{URL}/{credential.pk}", {"description": "x"}).status_code == 403


def test_user_role_and_anonymous_see_nothing(api, plain_user, credential):
    assert api(plain_user).get(URL).status_code == 403
    assert api(plain_user).get(f"{URL}/{credential.pk}").status_code == 403
    assert api().get(URL).status_code in {401, 403}
    assert api().get(f"{URL}/{credential.pk}").status_code in {401, 403}


@pytest.mark.parametrize(
    "body",
    [
        {"name": "big", "kind": "bmc", "username": "u", "password": "x" * 100_000},
        {"name": "big", "kind": "bmc", "username": "u", "private_key": "k" * 100_000},
        {"name": "bad kind", "kind": "toaster", "username": "u"},
        {"name": "nul", "kind": "bmc", "username": "u\x00", "password": "p"},
    ],
)
def test_hostile_json_is_400(api, admin_user, keys, body):
    response = api(admin_user).post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert not Credential.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "s", "kind": "bmc", "username": "u", "password": "\\ud800"}',
        b'{"name": "s", "kind": "bmc", "username": "u", "password": "\xff\xfe\xfa"}',
    ],
)
def test_surrogates_and_non_utf8_are_400(api, admin_user, keys, raw):
    response = api(admin_user).generic("POST", URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert not Credential.objects.exists()


def test_surrogate_in_form_post_is_400(api, admin_user, keys):
    # Form bodies reach the serializer undecoded by the JSON parser's checks.
    from pureboot.api.serializers import CredentialSerializer

    serializer = CredentialSerializer(
        data={"name": "s", "kind": "bmc", "username": "u", "password": "a\ud800b"}
    )
    assert not serializer.is_valid()
    assert "password" in serializer.errors


def test_admin_pages_never_render_secrets(client, admin_user, credential):
    admin_user.is_staff = True
    admin_user.save()
    client.force_login(admin_user)
    credential.refresh_from_db()
    for url in (
        "/admin/pureboot/credential/",
        f"/admin/pureboot/credential/{credential.pk}/change/",
        "/admin/pureboot/credential/add/",
    ):
        page = client.get(url)
        assert page.status_code == 200, url
        body = page.content.decode()
        assert PLAINTEXT not in body and credential.password_ciphertext not in body
    response = client.post(
        "/admin/pureboot/credential/add/",
        {"name": "idrac", "kind": "bmc", "username": "root", "password": "calvin-" + PLAINTEXT},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    created = Credential.objects.get(name="idrac")
    assert created.created_by == "user:alice-admin" and created.has_password
    event = AuditEvent.objects.filter(action="credential.create").order_by("-seq").first()
    assert event.object_id == str(created.pk)
    assert "calvin" not in json.dumps(event.changes) + json.dumps(event.details)
