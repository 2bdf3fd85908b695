"""/api/v1/credentials: secrets go in and never come out; roles decide who sees what."""

from __future__ import annotations

import json

import pytest

from audit.models import AuditEvent
from credentials.models import Credential
from tests.factories import make_user, sealed_credential

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


def _approve(client_of, second_admin, response):
    """A second admin approves the request a write answered with (202)."""
    assert response.status_code == 202, response.content
    assert response.data["code"] == "approval_required"
    request_id = response.data["approval_request"]["id"]
    done = client_of(second_admin).post(f"/api/v1/approvals/{request_id}/approve", {})
    assert done.status_code == 200, done.content
    assert done.data["status"] == "executed", done.data["result"]
    return done


def test_writes_are_four_eye_requests_and_never_return_secrets(api, admin_user, keys):
    client = api(admin_user)
    second = make_user("Admin", username="bert-admin")
    body = {"name": "ad-join", "kind": "domain_join", "username": "joiner", "password": PLAINTEXT}
    preview = client.post(f"{URL}?dry_run=1", body, format="json")
    assert preview.status_code == 200 and preview.data["dry_run"] is True
    assert "Create credential ad-join" in preview.data["what"]
    asked = client.post(URL, {**body, "reason": "new AD domain"}, format="json")
    _no_secret(asked)
    assert not Credential.objects.exists()  # nothing until a second person approves
    # The sealed secret in the pending request is not the plaintext.
    from approvals.models import ApprovalRequest

    pending = ApprovalRequest.objects.get(pk=asked.data["approval_request"]["id"])
    assert pending.sealed and PLAINTEXT not in pending.sealed
    assert asked.data["approval_request"]["what"].startswith("Create credential ad-join")
    # The requester cannot approve her own request.
    own = client.post(f"/api/v1/approvals/{pending.pk}/approve", {})
    assert own.status_code == 403
    done = _approve(api, second, asked)
    _no_secret(done)
    credential = Credential.objects.get(name="ad-join")
    assert credential.has_password and not credential.has_private_key
    assert credential.created_by == "user:alice-admin"
    pending.refresh_from_db()
    assert pending.sealed == ""  # secrets leave with the request
    from credentials.services import reveal

    assert reveal(credential, "task:test", "check").password == PLAINTEXT
    for response in (client.get(URL), client.get(f"{URL}/{credential.pk}")):
        assert response.status_code == 200, response.content
        _no_secret(response, credential)
    changed = client.patch(
        f"{URL}/{credential.pk}", {"password": "n3w-" + PLAINTEXT}, format="json"
    )
    _no_secret(changed, credential)
    _approve(api, second, changed)
    assert reveal(credential, "task:test", "check").password == "n3w-" + PLAINTEXT
    _approve(
        api, second, client.patch(f"{URL}/{credential.pk}", {"description": "AD"}, format="json")
    )
    assert client.get(f"{URL}/{credential.pk}").data["description"] == "AD"
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("credential.update") == 2
    assert actions.count("approval.request") == 3 and actions.count("approval.executed") == 3
    _approve(api, second, client.delete(f"{URL}/{credential.pk}"))
    assert not Credential.objects.exists()
    assert AuditEvent.objects.filter(action="credential.delete").count() == 1


def test_a_credential_changed_after_the_request_is_not_acted_on(api, admin_user, credential):
    from credentials import services as credentials

    asked = api(admin_user).delete(f"{URL}/{credential.pk}")
    assert asked.status_code == 202
    credentials.update_credential(
        credential.pk,
        "user:someone",
        {"description": "moved"},
        approval=sealed_credential("credential.change", credential.pk),
    )
    second = make_user("Admin", username="bert-admin")
    done = api(second).post(f"/api/v1/approvals/{asked.data['approval_request']['id']}/approve")
    assert done.data["status"] == "failed"
    assert "changed since the request" in done.data["result"]
    assert Credential.objects.filter(pk=credential.pk).exists()


def test_one_pending_request_per_credential_is_409(api, admin_user, credential):
    client = api(admin_user)
    assert (
        client.patch(f"{URL}/{credential.pk}", {"description": "a"}, format="json").status_code
        == 202
    )
    again = client.delete(f"{URL}/{credential.pk}")
    assert again.status_code == 409 and "pending request" in again.data["detail"]


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
    from credentials.api.serializers import CredentialSerializer

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
        "/admin/credentials/credential/",
        f"/admin/credentials/credential/{credential.pk}/change/",
        "/admin/credentials/credential/add/",
    ):
        page = client.get(url)
        assert page.status_code == 200, url
        body = page.content.decode()
        assert PLAINTEXT not in body and credential.password_ciphertext not in body
    response = client.post(
        "/admin/credentials/credential/add/",
        {"name": "idrac", "kind": "bmc", "username": "root", "password": "calvin-" + PLAINTEXT},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert not Credential.objects.filter(name="idrac").exists()  # asked, not done
    from approvals import services as approvals
    from approvals.models import ApprovalRequest

    pending = ApprovalRequest.objects.get(action="credential.create")
    assert response["Location"] == f"/approvals/{pending.pk}/"
    approvals.approve(pending.pk, make_user("Admin", username="bert-admin"))
    created = Credential.objects.get(name="idrac")
    assert created.created_by == "user:alice-admin" and created.has_password
    event = AuditEvent.objects.filter(action="credential.create").order_by("-seq").first()
    assert event.object_id == str(created.pk)
    everything = json.dumps(list(AuditEvent.objects.values("changes", "details", "message")))
    assert "calvin" not in everything
