"""The Proxmox driver's connection: login (ticket or API token), TLS, errors, tasks.

:class:`ProxmoxSession` opens proxmoxer's HTTPS backend, writes ``ca_pem`` to
a private file for requests, turns proxmoxer's and requests' exceptions into
base.py's classes (never with a secret in their text) and waits for PVE tasks
(UPIDs) within the connection timeout.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.core import AuthenticationError

from .. import base

# PVE answers most refusals with HTTP 500 and a message: the message tells
# a missing object or a full storage from a passing hitch.
_NOT_FOUND = re.compile(r"does not exist|no such|not found|unable to find|hostname lookup", re.I)
_QUOTA = re.compile(r"insufficient|not enough|no space left|quota|out of memory", re.I)
_BUSY = re.compile(r"is locked|got timeout|can't lock|try again|timed out", re.I)


def _classify(message: str, default: type[base.HypervisorError]) -> base.HypervisorError:
    if _NOT_FOUND.search(message):
        return base.NotFound(message)
    if _QUOTA.search(message):
        return base.QuotaExceeded(message)
    if _BUSY.search(message):
        return base.TransientError(message)
    return default(message)


def _api_error(exc: ResourceException, what: str) -> base.HypervisorError:
    detail = " ".join(str(exc.content or exc.status_message or "").split())
    if isinstance(exc.errors, dict) and exc.errors:
        detail += " (" + "; ".join(f"{k}: {str(v).strip()}" for k, v in exc.errors.items()) + ")"
    message = f"proxmox: {what}: {detail} (HTTP {exc.status_code})"
    if exc.status_code in (401, 403):
        return base.AuthenticationFailed(message)
    if exc.status_code == 400:
        return base.InvalidRequest(message)
    # 5xx (500 for most refusals, 595/596 for an unreachable cluster peer) is
    # worth retrying unless the message says otherwise; 501 is an unknown call.
    transient = exc.status_code >= 500 and exc.status_code != 501
    return _classify(message, base.TransientError if transient else base.PermanentError)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class ProxmoxSession(base.Driver):
    """A PVE API connection: login, TLS, errors, and waiting for tasks."""

    def __init__(self, connection: base.Connection) -> None:
        super().__init__(connection)
        self._api: ProxmoxAPI | None = None
        self._ca_cleanup: weakref.finalize | None = None

    # --- connection ------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """Belt and braces: no library message may carry the password or token."""
        for secret in (self.connection.password, self.connection.token):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Turn proxmoxer's and requests' exceptions into base.py's. ``from None``
        drops the original, whose text or traceback might hold a secret."""
        where = self.connection.endpoint
        try:
            yield
        except base.HypervisorError:
            raise
        except ResourceException as exc:
            raise _api_error(exc, self._scrub(what)) from None
        except AuthenticationError as exc:
            code = re.search(r"code: (\d+)", str(exc))
            status = int(code[1]) if code else 0
            message = f"proxmox: {self.connection.username} could not log in to {where}"
            if status in (401, 403):
                raise base.AuthenticationFailed(f"{message} (HTTP {status})") from None
            raise base.TransientError(f"{message}: HTTP {status or 'error'}") from None
        except requests.exceptions.SSLError as exc:
            reason = re.search(r"certificate verify failed[^'\")]*", str(exc))
            detail = reason[0] if reason else self._scrub(str(exc))[:300]
            raise base.TLSFailed(f"proxmox: TLS with {where} failed: {detail}") from None
        except requests.exceptions.RequestException as exc:
            # Refused, reset, DNS failure, connect or read timeout.
            detail = self._scrub(str(exc))[:300]
            raise base.TransientError(f"proxmox: {what}: {where} unreachable: {detail}") from None
        except ValueError as exc:
            # http.client refuses header values with control characters and
            # quotes the value in its message: never pass that text on.
            raise base.InvalidRequest(f"proxmox: {what}: {self._scrub(str(exc))[:200]}") from None

    def _verify(self) -> bool | str:
        """requests' ``verify``: off, the system CAs, or a private file holding ca_pem."""
        if not self.connection.verify_tls:
            return False
        if not self.connection.ca_pem:
            return True
        fd, path = tempfile.mkstemp(prefix="pureboot-pve-ca-", suffix=".pem")  # mode 0600
        with os.fdopen(fd, "w") as file:
            file.write(self.connection.ca_pem)
        # Deleted on close(), or when the driver is collected if nobody closes it.
        self._ca_cleanup = weakref.finalize(self, _remove, path)
        return path

    def _open(self) -> ProxmoxAPI:
        if self._api is not None:
            return self._api
        c = self.connection
        parts = urlsplit(c.endpoint if "://" in c.endpoint else f"https://{c.endpoint}")
        if parts.scheme != "https" or not parts.hostname:
            raise base.InvalidRequest(
                f"proxmox: endpoint {c.endpoint!r}: use https://HOST[:PORT] (PVE speaks only HTTPS)"
            )
        if any(ch.isspace() or ord(ch) < 32 for ch in c.username + c.token):
            raise base.AuthenticationFailed(
                "proxmox: the username or API token holds characters HTTP cannot carry"
            )
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        kwargs: dict[str, Any] = {
            "host": host,
            "port": parts.port or 8006,
            "path_prefix": parts.path.strip("/") or None,
            "backend": "https",
            "service": "PVE",
            "timeout": c.timeout,
        }
        if c.token:
            user, bang, token_name = c.username.partition("!")
            if not (user and bang and token_name):
                raise base.AuthenticationFailed(
                    "proxmox: an API token needs the username USER@REALM!TOKENID"
                )
            kwargs.update(user=user, token_name=token_name, token_value=c.token)
        elif c.password:
            kwargs.update(user=c.username, password=c.password)
        else:
            raise base.AuthenticationFailed("proxmox: the credential has no password or token")
        kwargs["verify_ssl"] = self._verify()
        with self._calling(f"log in to {c.endpoint}"):
            # With a password this logs in (POST /access/ticket) at once.
            self._api = ProxmoxAPI(**kwargs)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            # proxmoxer has no close(); its requests session is in _store.
            session = getattr(self._api, "_store", {}).get("session")
            if session is not None:
                session.close()
            self._api = None
        if self._ca_cleanup is not None:
            self._ca_cleanup()

    def _call(self, method: str, path: str, what: str, **params: Any) -> Any:
        api = self._open()
        with self._calling(what):
            return getattr(api(path), method)(**params)

    def _get(self, path: str, what: str, **params: Any) -> Any:
        return self._call("get", path, what, **params)

    def _wait(self, upid: Any, what: str) -> None:
        """Wait for a task within the connection timeout; raise if it failed."""
        if not (isinstance(upid, str) and upid.startswith("UPID:")):
            return  # a synchronous answer: done already
        node, kind = upid.split(":")[1], upid.split(":")[5]
        deadline = time.monotonic() + self.connection.timeout
        delay = 0.05
        while True:
            status = self._get(f"nodes/{node}/tasks/{upid}/status", f"{what}: task status")
            if status.get("status") != "running":
                break
            if time.monotonic() + delay > deadline:
                raise base.TransientError(
                    f"proxmox: {what}: task {kind} {upid} still running after "
                    f"{self.connection.timeout:g} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        exit_status = str(status.get("exitstatus", ""))
        # "WARNINGS: n" is a task that succeeded with warnings in its log.
        if exit_status != "OK" and not exit_status.startswith("WARNINGS"):
            message = f"proxmox: {what}: task {kind} {upid} failed: {self._scrub(exit_status)}"
            raise _classify(message, base.PermanentError)

    def _run(self, method: str, path: str, what: str, **params: Any) -> None:
        self._wait(self._call(method, path, what, **params), what)
