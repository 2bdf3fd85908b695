"""Per-request metadata that the audit writer attaches to every event.

The web middleware fills it; Celery tasks and management commands leave it
empty. Actors are always passed explicitly to the writer; only where the
request came from travels this way.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RequestContext:
    request_id: str = ""
    source_ip: str | None = None
    # The request itself, for the log formatter's actor (who signed in is only
    # known once authentication ran, after this context was made).
    request: Any = field(default=None, compare=False, repr=False)


_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "pureboot_request_context",
    default=RequestContext(),  # noqa: B039 - frozen dataclass, immutable
)


def current() -> RequestContext:
    return _current.get()


def set_current(ctx: RequestContext) -> contextvars.Token:
    return _current.set(ctx)


def reset(token: contextvars.Token) -> None:
    _current.reset(token)
