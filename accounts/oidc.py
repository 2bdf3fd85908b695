"""OpenID Connect sign-in: mozilla-django-oidc plus PureBoot's role rules.

mozilla-django-oidc runs the authorization-code flow (with PKCE, state and
nonce). This module adds:

- endpoints from the issuer's discovery document, fetched at the first
  sign-in and kept for an hour (``PUREBOOT_OIDC_*_ENDPOINT`` override it), so
  PureBoot starts while the provider is down;
- ID tokens verified as RS256 against the provider's JWKS, with their
  audience (our client id) and issuer checked;
- users found by their subject (:class:`pureboot.models.OIDCIdentity`), named
  after ``preferred_username`` when it is a valid, free username, and never
  matched to a local account;
- roles set from the groups claim (:func:`accounts.directory.sync_roles`);
- provider failures and bad or expired requests answered with a page (4xx or
  503) or the sign-in form, never a 500.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, transaction
from django.http import Http404, HttpResponse
from django.shortcuts import render
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from . import directory
from .models import OIDCIdentity

log = logging.getLogger(__name__)
SOURCE = "oidc"
DISCOVERY_TTL_SECONDS = 3600
# A sign-in must come back from the provider within this time.
STATE_MAX_AGE_SECONDS = 600
# Django's own username rule (UnicodeUsernameValidator), and its length.
USERNAME_RE = re.compile(r"^[\w.@+-]{1,150}\Z")

_discovery_lock = threading.Lock()
_discovery: dict[str, tuple[float, dict[str, str]]] = {}


class ProviderUnavailable(Exception):
    """The provider's discovery document could not be fetched or makes no sense."""


def provider_config() -> dict[str, str]:
    """The issuer and the four endpoints: from settings, else from the discovery document.

    Raises :class:`ProviderUnavailable`.
    """
    issuer = settings.PUREBOOT_OIDC_ISSUER
    given = {k: v for k, v in settings.PUREBOOT_OIDC_ENDPOINTS.items() if v}
    if len(given) == 4:
        return {"issuer": issuer, **given}
    with _discovery_lock:
        cached = _discovery.get(issuer)
        if cached and cached[0] > time.monotonic():
            return {**cached[1], **given}
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        doc = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(f"discovery document {url}: {exc}") from exc
    if not isinstance(doc, dict) or str(doc.get("issuer", "")).rstrip("/") != issuer:
        raise ProviderUnavailable(f"{url} names another issuer than PUREBOOT_OIDC_ISSUER")
    keys = {
        "authorization": "authorization_endpoint",
        "token": "token_endpoint",
        "userinfo": "userinfo_endpoint",
        "jwks": "jwks_uri",
    }
    found = {k: doc.get(v) for k, v in keys.items()}
    if not all(
        isinstance(v, str) and v.startswith(("https://", "http://")) for v in found.values()
    ):
        raise ProviderUnavailable(f"{url} lacks one of {', '.join(keys.values())}")
    config = {"issuer": issuer, **found}
    with _discovery_lock:
        _discovery[issuer] = (time.monotonic() + DISCOVERY_TTL_SECONDS, config)
    return {**config, **given}


def _error_page(request, status: int, message: str) -> HttpResponse:
    return render(
        request,
        "admin/sso_error.html",
        # The admin's own context: its header and title, as on the sign-in page.
        {**admin.site.each_context(request), "message": message, "title": "Single sign-on"},
        status=status,
    )


def _require_enabled() -> None:
    if not settings.PUREBOOT_OIDC_ENABLED:
        raise Http404("single sign-on is not configured")


class AuthenticateView(OIDCAuthenticationRequestView):
    """``/oidc/authenticate/``: send the browser to the provider."""

    def __init__(self, **kwargs):
        # The parent reads the endpoint from settings here; ours comes from discovery.
        super(OIDCAuthenticationRequestView, self).__init__(**kwargs)

    def get(self, request):
        _require_enabled()
        try:
            config = provider_config()
        except ProviderUnavailable as exc:
            log.warning("single sign-on unavailable: %s", exc)
            return _error_page(request, 503, "The single sign-on provider cannot be reached.")
        self.OIDC_OP_AUTH_ENDPOINT = config["authorization"]
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        return super().get(request)


class CallbackView(OIDCAuthenticationCallbackView):
    """``/oidc/callback/``: the provider sends the browser back here."""

    def get(self, request):
        _require_enabled()
        state = request.GET.get("state")
        states = request.session.get("oidc_states")
        if state and isinstance(states, dict) and isinstance(states.get(state), dict):
            added_on = states[state].get("added_on") or 0
            if time.time() - added_on > STATE_MAX_AGE_SECONDS:
                del states[state]
                request.session.modified = True
                return _error_page(request, 400, "This sign-in took too long. Start again.")
        try:
            return super().get(request)
        except SuspiciousOperation as exc:
            log.warning("single sign-on callback refused: %s", exc)
            return _error_page(
                request, 400, "This sign-in request is unknown or already used. Start again."
            )


def username_for(claims: dict[str, Any], issuer: str) -> str:
    """``preferred_username`` when Django accepts it, else a name derived from the subject."""
    wanted = claims.get("preferred_username")
    if isinstance(wanted, str) and USERNAME_RE.match(wanted):
        return wanted
    digest = hashlib.sha256(f"{issuer}\0{claims['sub']}".encode()).hexdigest()[:20]
    return f"oidc-{digest}"


def groups_of(claims: dict[str, Any]) -> set[str]:
    """The values of the groups claim (a list of strings, or one string)."""
    value = claims.get(settings.PUREBOOT_OIDC_GROUPS_CLAIM)
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return set()


def _require_rs256(token) -> None:
    alg = jwt.get_unverified_header(token).get("alg")
    if alg != "RS256":
        raise SuspiciousOperation(f"token signed with {alg!r}, not RS256")


class PureBootOIDCBackend(OIDCAuthenticationBackend):
    """Signs in the person the provider vouches for, and sets their roles."""

    def __init__(self, *args, **kwargs):
        # The parent reads every endpoint from settings here, for every
        # authenticate() call of every kind; ours are resolved in authenticate().
        self.UserModel = get_user_model()

    def authenticate(self, request, **kwargs):
        # Only our callback passes a nonce; password sign-ins are not ours.
        if not settings.PUREBOOT_OIDC_ENABLED or "nonce" not in kwargs or "password" in kwargs:
            return None
        try:
            config = provider_config()
            self.issuer = config["issuer"]
            self.OIDC_OP_TOKEN_ENDPOINT = config["token"]
            self.OIDC_OP_USER_ENDPOINT = config["userinfo"]
            self.OIDC_OP_JWKS_ENDPOINT = config["jwks"]
            self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
            self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
            self.OIDC_RP_SIGN_ALGO = "RS256"
            self.OIDC_RP_IDP_SIGN_KEY = None
            return super().authenticate(request, **kwargs)
        except (
            ProviderUnavailable,
            directory.RolesMissing,
            # Two first sign-ins of one person at once: the second one loses.
            IntegrityError,
            requests.RequestException,
            jwt.PyJWTError,
            SuspiciousOperation,
            ValueError,
            KeyError,
            TypeError,
        ) as exc:
            # The message names what failed, never a token or the client secret.
            log.warning("single sign-on failed: %s: %s", type(exc).__name__, str(exc)[:300])
            return None

    def get_user(self, user_id):
        return ModelBackend.get_user(self, user_id)

    def verify_token(self, token, **kwargs):
        # Refuse other algorithms before looking for a key (an HS256 token has none).
        _require_rs256(token)
        return super().verify_token(token, **kwargs)

    def _verify_jws(self, payload, key):
        """RS256 only, signed by a key from the provider's JWKS, for us, from our issuer."""
        _require_rs256(payload)
        return jwt.decode(
            payload,
            key,
            algorithms=["RS256"],
            audience=self.OIDC_RP_CLIENT_ID,
            issuer=self.issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            leeway=30,
        )

    def get_userinfo(self, access_token, id_token, payload):
        """The ID token's claims, completed by the userinfo endpoint's (same subject)."""
        userinfo = super().get_userinfo(access_token, id_token, payload)
        if not isinstance(userinfo, dict) or userinfo.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("userinfo names another subject than the ID token")
        return {**payload, **userinfo}

    def verify_claims(self, claims):
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            return False
        required = settings.PUREBOOT_OIDC_REQUIRE_GROUP
        if required and required not in groups_of(claims):
            log.info("single sign-on refused: not in %s", required)
            return False
        return True

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(
            oidc_identities__issuer=self.issuer, oidc_identities__subject=claims["sub"]
        )

    def create_user(self, claims):
        username = username_for(claims, self.issuer)
        if self.UserModel.objects.filter(username__iexact=username).exists():
            directory.refuse(
                username, source=SOURCE, reason="another account already has this username"
            )
            raise SuspiciousOperation(f"username {username!r} is taken")
        with transaction.atomic():
            user = self.UserModel(username=username)
            user.set_unusable_password()
            self._copy_profile(user, claims)
            user.save()
            OIDCIdentity.objects.create(user=user, issuer=self.issuer, subject=claims["sub"])
            self._sync(user, claims)
        return user

    def update_user(self, user, claims):
        if directory.is_local_account(user):
            directory.refuse(
                user.get_username(), source=SOURCE, reason="this account has a local password"
            )
            raise SuspiciousOperation("account has a local password")
        with transaction.atomic():
            if self._copy_profile(user, claims):
                user.save(update_fields=["email", "first_name", "last_name"])
            self._sync(user, claims)
        return user

    def _sync(self, user, claims) -> None:
        roles = directory.roles_for(groups_of(claims), settings.PUREBOOT_OIDC_ROLE_GROUPS)
        directory.sync_roles(user, roles, source=SOURCE)

    @staticmethod
    def _copy_profile(user, claims) -> bool:
        """Copy e-mail and names from the claims; returns whether anything changed."""
        changed = False
        for field, claim, limit in (
            ("email", "email", 254),
            ("first_name", "given_name", 150),
            ("last_name", "family_name", 150),
        ):
            value = claims.get(claim)
            if isinstance(value, str) and value[:limit] != getattr(user, field):
                setattr(user, field, value[:limit])
                changed = True
        return changed
