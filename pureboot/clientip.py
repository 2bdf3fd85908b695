"""Who is asking: the client's address, trusting X-Forwarded-For only from our proxies.

Behind nginx every request comes from the proxy's address; the client's is
in ``X-Forwarded-For``. That header is believed only when the direct peer is
in ``PUREBOOT_TRUSTED_PROXIES``; then the client is the right-most address
in it that is not itself a trusted proxy. Anyone else's header is ignored,
so a client cannot pick the address that throttles, lockouts and the audit
trail see.

:class:`ClientAddressMiddleware` resolves it once per request, first in the
stack: it sets ``REMOTE_ADDR`` to the client and removes the forwarding
headers, so every later reader (DRF throttles, django-axes, the audit
trail) sees the same, trustworthy address.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings

FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_FORWARDED")


@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in _networks(tuple(settings.PUREBOOT_TRUSTED_PROXIES)))


def client_address(meta) -> str:
    """The client's address for a WSGI environ / ``request.META``."""
    peer = (meta.get("REMOTE_ADDR") or "").strip()
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if not forwarded or not _trusted(peer):
        return peer
    # The right-most hops are the ones our proxies appended; the client writes
    # the left. Only the last 32 are read (a long header is the client's padding).
    for hop in reversed(forwarded.split(",")[-32:]):
        hop = hop.strip()
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain: believe only the peer we can see
        if not _trusted(hop):
            return hop
    return peer


def resolve(meta) -> None:
    """Rewrite ``meta`` in place: ``REMOTE_ADDR`` is the client, forwarding headers gone."""
    meta["REMOTE_ADDR"] = client_address(meta)
    for header in FORWARDING_HEADERS:
        meta.pop(header, None)


class ClientAddressMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        resolve(request.META)
        return self.get_response(request)
