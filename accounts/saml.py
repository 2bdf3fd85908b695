"""SAML 2.0 sign-in: pysaml2 as the service provider, plus PureBoot's role rules.

pysaml2 builds the signed AuthnRequest, and checks the identity provider's
answer: the XML signature (by the xmlsec1 program, against the certificate in
the IdP's metadata), the audience (our entity id), the destination (our
assertion consumer service), the validity window (with
``PUREBOOT_SAML_CLOCK_SKEW_SECONDS`` of slack) and that the answer is to a
request we made. This module adds:

- assertions must be signed, whether or not the response is;
- each assertion signs someone in once (:class:`accounts.models.SAMLAssertionUse`);
- users are found by their identity (:class:`accounts.models.SAMLIdentity`:
  IdP entity id + the username attribute), never matched to a local, LDAP or
  OIDC account;
- roles set from the groups attribute (:func:`accounts.directory.sync_roles`)
  at every sign-in.

The views (``/saml/login/``, ``/saml/acs/``, ``/saml/metadata/``) live in
:mod:`accounts.saml_views`.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import re
import threading
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db import IntegrityError, transaction
from django.utils import timezone
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.response import AuthnResponse

from . import directory
from .models import SAMLAssertionUse, SAMLIdentity

log = logging.getLogger(__name__)
SOURCE = "saml"
# The client (and with it remote IdP metadata) is rebuilt after this long; this
# also bounds pysaml2's in-memory cache of the people it has seen.
METADATA_TTL_SECONDS = 3600
# Django's own username rule (UnicodeUsernameValidator), and its length.
USERNAME_RE = re.compile(r"^[\w.@+-]{1,150}\Z")

_client_lock = threading.Lock()
_clients: dict[tuple, tuple[float, Saml2Client]] = {}


class ProviderUnavailable(Exception):
    """The identity provider's metadata could not be loaded, or names no single IdP."""


class Refused(Exception):
    """The identity provider's answer is not accepted; the message says why (no secrets)."""


def acs_url() -> str:
    """Where the IdP posts its answers: fixed by settings, never from a request's Host."""
    return f"{settings.PUREBOOT_SAML_SP_BASE_URL}/saml/acs/"


def sp_config_dict() -> dict[str, Any]:
    if settings.PUREBOOT_SAML_IDP_METADATA_FILE:
        metadata: dict[str, Any] = {"local": [settings.PUREBOOT_SAML_IDP_METADATA_FILE]}
    else:
        metadata = {"remote": [{"url": settings.PUREBOOT_SAML_IDP_METADATA_URL}]}
    keypair = {
        "key_file": settings.PUREBOOT_SAML_SP_KEY_FILE,
        "cert_file": settings.PUREBOOT_SAML_SP_CERT_FILE,
    }
    return {
        "entityid": settings.PUREBOOT_SAML_SP_ENTITY_ID,
        "xmlsec_binary": settings.PUREBOOT_SAML_XMLSEC_BINARY,
        **keypair,
        "encryption_keypairs": [keypair],
        "metadata": metadata,
        "accepted_time_diff": settings.PUREBOOT_SAML_CLOCK_SKEW_SECONDS,
        "allow_unknown_attributes": True,
        # Bounds the metadata download (PUREBOOT_SAML_IDP_METADATA_URL), in seconds.
        "http_client_timeout": 10,
        "service": {
            "sp": {
                "name": "PureBoot",
                "endpoints": {"assertion_consumer_service": [(acs_url(), BINDING_HTTP_POST)]},
                "allow_unsolicited": settings.PUREBOOT_SAML_ALLOW_UNSOLICITED,
                "authn_requests_signed": True,
                "want_assertions_signed": True,
                "want_response_signed": False,
            }
        },
    }


def client() -> Saml2Client:
    """A pysaml2 client for the current settings (remote metadata kept an hour).

    Raises :class:`ProviderUnavailable`.
    """
    key = (
        settings.PUREBOOT_SAML_IDP_METADATA_FILE,
        settings.PUREBOOT_SAML_IDP_METADATA_URL,
        settings.PUREBOOT_SAML_SP_ENTITY_ID,
        settings.PUREBOOT_SAML_SP_BASE_URL,
        settings.PUREBOOT_SAML_SP_KEY_FILE,
        settings.PUREBOOT_SAML_SP_CERT_FILE,
        settings.PUREBOOT_SAML_ALLOW_UNSOLICITED,
        settings.PUREBOOT_SAML_CLOCK_SKEW_SECONDS,
        settings.PUREBOOT_SAML_XMLSEC_BINARY,
    )
    with _client_lock:
        cached = _clients.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
    try:
        config = SPConfig()
        config.load(sp_config_dict())
        saml_client = Saml2Client(config=config)
    except Exception as exc:  # pysaml2 raises many kinds for unreadable metadata
        raise ProviderUnavailable(f"IdP metadata: {type(exc).__name__}: {str(exc)[:300]}") from exc
    if len(idp_entity_ids(saml_client)) != 1:
        raise ProviderUnavailable("the IdP metadata must describe exactly one identity provider")
    with _client_lock:
        _clients.clear()
        _clients[key] = (time.monotonic() + METADATA_TTL_SECONDS, saml_client)
    return saml_client


def clear_cache() -> None:
    """Forget loaded metadata (the next sign-in loads it again)."""
    with _client_lock:
        _clients.clear()


def idp_entity_ids(saml_client: Saml2Client) -> list[str]:
    """The identity providers the loaded metadata describes (PureBoot accepts one)."""
    return sorted(saml_client.metadata.with_descriptor("idpsso"))


def authn_request(next_path: str) -> tuple[str, str]:
    """A signed AuthnRequest by HTTP-Redirect: returns (request id, URL to send the browser to)."""
    saml_client = client()
    request_id, info = saml_client.prepare_for_authenticate(
        entityid=idp_entity_ids(saml_client)[0],
        relay_state=next_path,
        binding=BINDING_HTTP_REDIRECT,
        sign=True,
    )
    return request_id, dict(info["headers"])["Location"]


def parse_response(saml_response: str, outstanding: dict[str, str]) -> AuthnResponse:
    """Check the IdP's answer (base64 XML from the HTTP-POST binding).

    ``outstanding`` maps the ids of requests this browser made to where it
    wanted to go. Raises :class:`Refused` with the reason; pysaml2's many
    exception types are folded into it.
    """
    saml_client = client()
    try:
        response = saml_client.parse_authn_request_response(
            saml_response, BINDING_HTTP_POST, outstanding=outstanding
        )
    except Exception as exc:  # pysaml2 signals every failed check with its own type
        raise Refused(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    if response is None or response.assertion is None:
        raise Refused("no assertion could be verified")
    if len(getattr(response, "assertions", [response.assertion])) != 1:
        raise Refused("more than one assertion")
    if not response.assertion.signature:
        # pysaml2 already requires it (want_assertions_signed); kept explicit.
        raise Refused("the assertion is not signed")
    return response


def record_use(response: AuthnResponse) -> None:
    """Remember the assertion; raise :class:`Refused` if it was used before (a replay)."""
    now = timezone.now()
    skew = datetime.timedelta(seconds=settings.PUREBOOT_SAML_CLOCK_SKEW_SECONDS)
    not_on_or_after = response.not_on_or_after
    if not_on_or_after:
        expires = datetime.datetime.fromtimestamp(not_on_or_after, tz=datetime.UTC) + skew
    else:
        # No NotOnOrAfter in the conditions: remember it a day.
        expires = now + datetime.timedelta(days=1)
    idp = str(response.issuer() or "")[:255]
    assertion_id = str(response.assertion.id or "")
    if not assertion_id or len(assertion_id) > 255:
        raise Refused("the assertion has no usable ID")
    try:
        with transaction.atomic():
            SAMLAssertionUse.objects.filter(expires_at__lt=now).delete()
            SAMLAssertionUse.objects.create(idp=idp, assertion_id=assertion_id, expires_at=expires)
    except IntegrityError as exc:
        directory.refuse(
            subject_of(response.ava or {}) or "(unknown)",
            source=SOURCE,
            reason=f"assertion {assertion_id[:64]} was already used (a replayed response)",
        )
        raise Refused("assertion already used") from exc


def _values(ava: dict[str, Any], name: str) -> list[str]:
    """An attribute's string values (pysaml2 gives lists; anything else counts as none)."""
    value = ava.get(name)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]


def subject_of(ava: dict[str, Any]) -> str:
    """The username attribute's value: the person's stable name at the IdP ('' if absent)."""
    values = _values(ava, settings.PUREBOOT_SAML_USERNAME_ATTRIBUTE)
    return values[0].strip()[:255] if len(values) == 1 else ""


def groups_of(ava: dict[str, Any]) -> set[str]:
    """The values of the groups attribute; they compare exactly with the role map."""
    return set(_values(ava, settings.PUREBOOT_SAML_GROUPS_ATTRIBUTE))


def username_for(subject: str, idp: str) -> str:
    """The subject when Django accepts it as a username, else a name derived from it."""
    if USERNAME_RE.match(subject):
        return subject
    digest = hashlib.sha256(f"{idp}\0{subject}".encode()).hexdigest()[:20]
    return f"saml-{digest}"


class PureBootSAMLBackend(ModelBackend):
    """Signs in the person a verified assertion names, and sets their roles.

    Only :mod:`accounts.saml_views` calls it, with ``saml_response``; password
    sign-ins are not its business.
    """

    def authenticate(self, request, saml_response: AuthnResponse | None = None, **kwargs):
        if not settings.PUREBOOT_SAML_ENABLED or saml_response is None or "password" in kwargs:
            return None
        ava = saml_response.ava or {}
        idp = str(saml_response.issuer() or "")[:255]
        subject = subject_of(ava)
        if not subject:
            log.warning(
                "SAML sign-in refused: no single %r attribute",
                settings.PUREBOOT_SAML_USERNAME_ATTRIBUTE,
            )
            return None
        try:
            user = (
                get_user_model()
                .objects.filter(saml_identities__idp=idp, saml_identities__subject=subject)
                .first()
            )
            if user is None:
                user = self._create(subject, idp, ava)
            else:
                user = self._update(user, ava)
        except (
            directory.RolesMissing,
            # Two first sign-ins of one person at once: the second one loses.
            IntegrityError,
            Refused,
        ) as exc:
            log.warning("SAML sign-in failed: %s: %s", type(exc).__name__, str(exc)[:300])
            return None
        return user if self.user_can_authenticate(user) else None

    def _create(self, subject: str, idp: str, ava: dict[str, Any]):
        model = get_user_model()
        username = username_for(subject, idp)
        if model.objects.filter(username__iexact=username).exists():
            directory.refuse(
                username, source=SOURCE, reason="another account already has this username"
            )
            raise Refused(f"username {username!r} is taken")
        with transaction.atomic():
            user = model(username=username)
            user.set_unusable_password()
            self._copy_profile(user, ava)
            user.save()
            SAMLIdentity.objects.create(user=user, idp=idp, subject=subject)
            self._sync(user, ava)
        return user

    def _update(self, user, ava: dict[str, Any]):
        if directory.is_local_account(user):
            directory.refuse(
                user.get_username(), source=SOURCE, reason="this account has a local password"
            )
            raise Refused("account has a local password")
        with transaction.atomic():
            if self._copy_profile(user, ava):
                user.save(update_fields=["email"])
            self._sync(user, ava)
        return user

    @staticmethod
    def _sync(user, ava: dict[str, Any]) -> None:
        roles = directory.roles_for(groups_of(ava), settings.PUREBOOT_SAML_ROLE_GROUPS)
        directory.sync_roles(user, roles, source=SOURCE)

    @staticmethod
    def _copy_profile(user, ava: dict[str, Any]) -> bool:
        """Copy the e-mail attribute; returns whether it changed."""
        values = _values(ava, settings.PUREBOOT_SAML_EMAIL_ATTRIBUTE)
        email = values[0][:254] if values else ""
        if email and email != user.email:
            user.email = email
            return True
        return False
