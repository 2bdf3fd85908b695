"""``/saml/login/``, ``/saml/acs/`` and ``/saml/metadata/``: SAML 2.0 sign-in pages.

All three answer 404 unless SAML is configured. Requests this browser made
are remembered in a signed cookie (request id -> where to go afterwards),
sent back with the IdP's cross-site POST: ``SameSite=None; Secure`` when
``PUREBOOT_SAML_SP_BASE_URL`` is HTTPS. Where to go afterwards is always a
path on this site: a ``next`` naming another host or scheme is refused, such
a ``RelayState`` ignored.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import authenticate, login
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string

from . import saml

log = logging.getLogger(__name__)
COOKIE = "pureboot_saml"
COOKIE_SALT = "pureboot.saml.requests"
# A sign-in must come back from the identity provider within this time.
REQUEST_MAX_AGE_SECONDS = 600
# Sign-ins started in several tabs at once, each remembered.
MAX_OUTSTANDING = 5
MAX_NEXT_LENGTH = 2000


def _error_page(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return render(
        request,
        "admin/sso_error.html",
        # The admin's own context: its header and title, as on the sign-in page.
        {**admin.site.each_context(request), "message": message, "title": "SAML sign-in"},
        status=status,
    )


def _require_enabled() -> None:
    if not settings.PUREBOOT_SAML_ENABLED:
        raise Http404("SAML sign-in is not configured")


def local_path(value: object) -> str | None:
    """``value`` when it is a path on this site (``/...``), else None."""
    if not isinstance(value, str) or not value or len(value) > MAX_NEXT_LENGTH:
        return None
    if not value.startswith("/") or value.startswith(("//", "/\\")):
        return None
    if not url_has_allowed_host_and_scheme(value, allowed_hosts=set()):
        return None
    return value


def _outstanding(request: HttpRequest) -> dict[str, str]:
    raw = request.COOKIES.get(COOKIE)
    if not raw:
        return {}
    try:
        data = signing.loads(raw, salt=COOKIE_SALT, max_age=REQUEST_MAX_AGE_SECONDS)
    except signing.BadSignature:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and local_path(v)}


def _set_outstanding(request: HttpRequest, response: HttpResponse, data: dict[str, str]) -> None:
    if not data:
        response.delete_cookie(COOKIE, path="/saml/")
        return
    # The scheme browsers use, from settings: behind a TLS-terminating proxy
    # the request itself arrives over plain HTTP.
    secure = settings.PUREBOOT_SAML_SP_BASE_URL.startswith("https://")
    response.set_cookie(
        COOKIE,
        signing.dumps(data, salt=COOKIE_SALT),
        max_age=REQUEST_MAX_AGE_SECONDS,
        path="/saml/",
        httponly=True,
        secure=secure,
        # The IdP's answer is a cross-site POST: browsers send only SameSite=None
        # cookies with it, and only over HTTPS.
        samesite="None" if secure else "Lax",
    )


@method_decorator(never_cache, name="dispatch")
class LoginView(View):
    """``/saml/login/?next=/path``: send the browser to the identity provider."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest) -> HttpResponse:
        _require_enabled()
        wanted = request.GET.get("next")
        next_path = local_path(wanted) if wanted else settings.LOGIN_REDIRECT_URL
        if next_path is None:
            return _error_page(request, 400, "After sign-in PureBoot only goes to its own pages.")
        try:
            request_id, location = saml.authn_request(next_path)
        except saml.ProviderUnavailable as exc:
            log.warning("SAML sign-in unavailable: %s", exc)
            return _error_page(request, 503, "The SAML identity provider cannot be used now.")
        response = HttpResponseRedirect(location)
        outstanding = _outstanding(request)
        outstanding[request_id] = next_path
        _set_outstanding(request, response, dict(list(outstanding.items())[-MAX_OUTSTANDING:]))
        return response


@method_decorator(csrf_exempt, name="dispatch")  # the IdP's POST cannot carry our CSRF token
@method_decorator(never_cache, name="dispatch")
class AssertionConsumerView(View):
    """``/saml/acs/``: the identity provider's answer arrives here (HTTP-POST binding)."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        _require_enabled()
        saml_response = request.POST.get("SAMLResponse")
        if not saml_response:
            return _error_page(request, 400, "No SAML response was sent.")
        outstanding = _outstanding(request)
        try:
            response = saml.parse_response(saml_response, outstanding)
            saml.record_use(response)
        except saml.ProviderUnavailable as exc:
            log.warning("SAML sign-in unavailable: %s", exc)
            return _error_page(request, 503, "The SAML identity provider cannot be used now.")
        except saml.Refused as exc:
            log.warning("SAML response refused: %s", exc)
            return _error_page(
                request,
                400,
                "The identity provider's answer was refused (unsigned, altered, expired, "
                "already used, or not meant for PureBoot). Start again.",
            )
        # The username lets django-axes count refusals per person and address,
        # as for passwords; without it every refusal would count against all
        # SAML sign-ins from that address.
        user = authenticate(
            request, saml_response=response, username=saml.subject_of(response.ava or {})
        )
        if user is None:
            return HttpResponseRedirect(settings.LOGIN_REDIRECT_URL_FAILURE)
        login(request, user)
        if response.came_from:
            next_path = response.came_from  # checked when the request was made
        else:
            relay = request.POST.get("RelayState")
            next_path = local_path(relay) if relay else None
            if relay and next_path is None:
                log.warning("SAML RelayState to another site ignored")
            next_path = next_path or settings.LOGIN_REDIRECT_URL
        redirect = HttpResponseRedirect(next_path)
        outstanding.pop(response.in_response_to or "", None)
        _set_outstanding(request, redirect, outstanding)
        return redirect


@method_decorator(never_cache, name="dispatch")
class MetadataView(View):
    """``/saml/metadata/``: PureBoot's SP metadata, for the identity provider's configuration."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest) -> HttpResponse:
        _require_enabled()
        conf = saml.sp_config_dict()
        # The SP's own description needs no IdP metadata (which may be remote and down).
        del conf["metadata"]
        config = SPConfig()
        config.load(conf)
        xml = create_metadata_string(None, config=config, valid=24 * 7)
        return HttpResponse(xml, content_type="application/samlmetadata+xml")
