"""``/boot/ipxe`` without Django's request machinery, for the answers that change nothing.

A machine that waits for an operator, boots its disk or is left to the agent
polls ``/boot/ipxe`` every few seconds; in a boot storm thousands do. Those
answers need no session, no authentication, no CSRF check, no URL resolution
and no ORM query compilation, so ``BootFastPath`` (installed in
``pureboot.wsgi``, in front of Django) answers them itself:

1. one indexed query (``bootserve.queries.seen``) reads the node by MAC,
   SMBIOS UUID or Pi serial with everything the decision needs, from the
   current database state, on every request;
2. the same pure engine (``engine.decide``) decides;
3. a decision with no lifecycle step (wait, local disk, agent) is rendered by
   the same renderer (``ipxe.render``) with the same headers as the view,
   and recorded as the view records it (``records.record_boot``: one INSERT,
   or one UPDATE of the same machine's recent identical row).
   The script is remembered per query string and base URL, with the facts it
   was rendered from, and reused only while the facts just read are equal:
   a cache that cannot go stale, since it is checked against the database
   each time.

Everything else is handed to Django unchanged: unknown machines (discovery
writes a node), installs and retries and failures (transactions in
``bootserve.services``), retired machines and discovery off (404), every
malformed request (400), other methods (405, or 403 without a CSRF token),
disallowed hosts, any database error and any failure of the fast path
itself. The fast path never answers something the view would answer
differently; tests/bootserve/test_fastpath.py holds them side by side.

The fast path keeps its worker's database connection open between requests
(opening an SQLite connection costs more than the whole answer); a Django
request in the same worker still closes it by PUREBOOT_DB_CONN_MAX_AGE, and
a request served in a thread (runserver, gthread) closes it as Django would.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import setting_changed
from django.db import DatabaseError, close_old_connections, connection
from django.dispatch import receiver

from audit.middleware import request_id_for
from pureboot.clientip import client_address
from workflows.context import public_base_url

from . import ipxe, queries, records
from .engine import Client, Decision, Kind, NodeFacts, Policy, Step, decide
from .metrics import count_decision
from .models import Protocol
from .services import policy
from .views import client_from, poll_url, waited_rounds

log = logging.getLogger(__name__)

PATHS = frozenset({"/boot/ipxe", "/boot/ipxe/"})
METHODS = frozenset({"GET", "HEAD"})
# What Django's middleware adds to the view's answer (SecurityMiddleware,
# XFrameOptionsMiddleware); the identity test compares the two header sets.
HEADERS = (
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
# What the base URL is built from (Django's get_host() and scheme), per setting.
HOST_KEYS = (
    "HTTP_HOST",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "SERVER_NAME",
    "SERVER_PORT",
    "wsgi.url_scheme",
)
_BASE_URLS: dict[tuple[str, ...], str | None] = {}
_MAX_HOSTS = 64

StartResponse = Callable[..., object]
_MAIN_THREAD = threading.main_thread()


class BootFastPath:
    """WSGI wrapper: answer the side-effect-free ``/boot/ipxe`` requests; pass the rest on."""

    def __init__(self, app: Callable[[dict, StartResponse], Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in PATHS and environ.get("REQUEST_METHOD") in METHODS:
            try:
                body = answer(environ)
            except Exception:  # a bug here must not cost the machine its answer
                log.exception("boot fast path failed; Django answers instead")
                body = None
            finally:
                if threading.current_thread() is not _MAIN_THREAD:
                    # A server thread (runserver, gthread) may not come back:
                    # close as Django does at the end of its requests.
                    close_old_connections()
            if body is not None:
                headers = [
                    *HEADERS,
                    ("Content-Length", str(len(body))),
                    ("X-Request-ID", request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))),
                ]
                start_response("200 OK", headers)
                return [b"" if environ["REQUEST_METHOD"] == "HEAD" else body]
        return self.app(environ, start_response)


class Query(dict):
    """The query string as Django's QueryDict reads it (``get`` is the last value)."""

    @classmethod
    def parse(cls, raw: str, config: Config) -> Query:
        """Parse like QueryDict; ValueError for more fields than Django accepts."""
        data = raw.encode("latin-1")  # PEP 3333: the bytes as sent
        try:
            text = data.decode(config.charset)
        except UnicodeDecodeError:
            text = data.decode("iso-8859-1")
        query = cls()
        for key, value in parse_qsl(
            text, keep_blank_values=True, encoding=config.charset, max_num_fields=config.max_fields
        ):
            query.setdefault(key, []).append(value)
        return query

    def getlist(self, key: str) -> list[str]:
        return dict.get(self, key, [])

    def get(self, key: str, default=None):
        values = dict.get(self, key)
        return values[-1] if values else default


def answer(environ: dict) -> bytes | None:
    """The script for this request when it changes nothing but ``last_seen_at``; else None."""
    if environ.get("CONTENT_TYPE"):
        return None  # Django decodes the query with its charset: let it
    config = _config()
    base_url = _base_url(environ, config)
    if base_url is None:
        return None
    raw = environ.get("QUERY_STRING", "")
    known = _SCRIPTS.get((raw, base_url))
    if known is not None:
        client = known.client
    else:
        try:
            query = Query.parse(raw, config)
            client = client_from(query)
        except ValueError:
            return None  # Django answers 400 with its message
        if not (client.macs or client.uuid or client.serial):
            return None
    try:
        facts = queries.seen(client, last_seen_seconds=config.last_seen_seconds)
    except (DatabaseError, connection.Database.Error):
        # A connection the database dropped: let Django reconnect and answer.
        log.warning("boot fast path: database error; handing the request to Django", exc_info=True)
        connection.close()
        return None
    if facts is None:
        return None  # unknown machine: discovery writes, or 404
    if client.arch and client.arch != facts.arch:
        return None  # Django records the architecture it booted as, or refuses its install
    if known is not None and known.facts == facts:
        count_decision("ipxe", known.decision.kind)
        _record(environ, client, facts, known.decision)
        return known.body  # the same request, the same node as it was: the same script
    decision = decide(facts, client, config.policy)
    if decision.step != Step.NONE or decision.kind == Kind.IGNORE:
        return None  # Django performs the step (and sets last_seen_at again)
    if known is not None:
        query = Query.parse(raw, config)
    body = ipxe.render(
        decision,
        node_name=facts.name,
        state=facts.state,
        poll_url=poll_url(base_url),
        poll_seconds=config.policy.poll_seconds,
        wait_seconds=config.policy.wait_seconds,
        waited_rounds=waited_rounds(query),
    ).encode()
    if len(_SCRIPTS) >= MAX_SCRIPTS:
        _SCRIPTS.clear()
    _SCRIPTS[(raw, base_url)] = Script(client, facts, body, decision)
    count_decision("ipxe", decision.kind)
    _record(environ, client, facts, decision)
    return body


def _record(environ: dict, client: Client, facts: NodeFacts, decision: Decision) -> None:
    """Record the answer as ``views.boot_ipxe`` does (``services.handle_boot``)."""
    query = environ.get("QUERY_STRING", "")
    path = environ.get("PATH_INFO", "")
    records.record_boot(
        Protocol.HTTP,
        records.decision_outcome(decision),
        # The fast path runs before the client-address middleware: the client
        # behind a trusted proxy is resolved here the same way.
        address=client_address(environ),
        mac=client.macs[0] if client.macs else "",
        node_id=facts.id,
        site_id=facts.site_id,
        node_state=facts.state,
        asked=f"{path}?{query}" if query else path,
        answer=f"iPXE script: {decision.reason}",
    )


@dataclass(frozen=True)
class Script:
    """A script as rendered for one query string and base URL, and the facts it came from."""

    client: Client
    facts: NodeFacts
    body: bytes
    decision: Decision  # for the boot record and the boot decision counter


# The script is a pure function of the query string, the base URL, the
# settings and the node's facts. Each request still reads the facts from the
# database; when they equal the ones a script was rendered from, that script
# is the answer, so nothing here can go stale (settings changes clear it).
# Bounded: cleared when full.
_SCRIPTS: dict[tuple[str, str], Script] = {}
MAX_SCRIPTS = 10_000


@dataclass(frozen=True)
class Config:
    """The settings an answer depends on, read once (settings look-ups add up here)."""

    policy: Policy
    public_url: str
    last_seen_seconds: int
    charset: str
    max_fields: int | None
    host_keys: tuple[str, ...]


_CONFIG: list[Config] = []


def _config() -> Config:
    if not _CONFIG:
        proxy_header = settings.SECURE_PROXY_SSL_HEADER
        _CONFIG.append(
            Config(
                policy=policy(),
                public_url=settings.PUREBOOT_PUBLIC_URL.rstrip("/"),
                last_seen_seconds=settings.PUREBOOT_LAST_SEEN_SECONDS,
                charset=settings.DEFAULT_CHARSET,
                max_fields=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS,
                host_keys=(*HOST_KEYS, proxy_header[0]) if proxy_header else HOST_KEYS,
            )
        )
    return _CONFIG[0]


@receiver(setting_changed)
def _forget(**kwargs) -> None:
    """Settings changed (tests): read them again, and judge the hosts again."""
    _CONFIG.clear()
    _BASE_URLS.clear()
    _SCRIPTS.clear()


def _base_url(environ: dict, config: Config) -> str | None:
    """``public_base_url`` as the view computes it; None for a host Django refuses.

    Django itself validates the host (ALLOWED_HOSTS) and builds the URL, once
    per distinct host header: the answer depends on nothing else.
    """
    if config.public_url:
        return config.public_url
    key = tuple(environ.get(name, "") for name in config.host_keys)
    try:
        return _BASE_URLS[key]
    except KeyError:
        pass
    try:
        url = public_base_url(WSGIRequest({**environ, "QUERY_STRING": ""}))
    except DisallowedHost:
        url = None
    if len(_BASE_URLS) < _MAX_HOSTS:
        _BASE_URLS[key] = url
    return url
