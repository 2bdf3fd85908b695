"""Gives every request an id and records where it came from."""

from __future__ import annotations

import ipaddress
import re
import secrets

from . import context

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id_for(supplied: str) -> str:
    """The client's ``X-Request-ID`` when it is sane, else a new one."""
    return supplied if _REQUEST_ID_RE.match(supplied) else secrets.token_hex(16)


class RequestContextMiddleware:
    """Accept a sane client ``X-Request-ID`` (or make one) and echo it back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_for(request.headers.get("X-Request-ID", ""))
        source_ip = request.META.get("REMOTE_ADDR") or None
        if source_ip:
            try:
                source_ip = str(ipaddress.ip_address(source_ip))
            except ValueError:
                source_ip = None
        request.request_id = request_id
        token = context.set_current(context.RequestContext(request_id, source_ip, request))
        try:
            response = self.get_response(request)
        finally:
            context.reset(token)
        response["X-Request-ID"] = request_id
        return response
