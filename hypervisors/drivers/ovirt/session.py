"""The oVirt driver's connection: SSO login and logout, TLS, and errors.

:class:`OvirtSession` logs in through the engine's SSO itself (the SDK's own
SSO request has no timeout), writes ``ca_pem`` to a private file for libcurl,
and turns the SDK's and pycurl's exceptions into base.py's classes,
without a secret in their text. It also polls for the engine's asynchronous
work within the connection timeout.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import ovirtsdk4 as sdk
import pycurl

from .. import base

# libcurl's error numbers for a TLS failure (certificate, handshake, CA file).
_CURL_TLS = {35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91}
# The SDK reports curl failures as text: "(7, 'Failed to connect ...')" or
# "[(<pycurl.Curl ...>, 60, 'SSL certificate problem: ...')]".
_CURL_IN_TEXT = re.compile(r"(?:\(|, )(\d+), (['\"])(.*?)\2\)")
# The engine refuses with 409 "[Cannot ... . <why>]": the why tells a full
# domain or a busy VM from a refusal that will not change.
_QUOTA = re.compile(r"low disk space|not enough|no host that satisfies|quota|insufficient", re.I)
_BUSY = re.compile(r"in progress|try again|is locked|being (created|removed)", re.I)
_NOT_FOUND = re.compile(r"entity not found|does not exist|doesn't exist|not found", re.I)


def _classify(message: str, default: type[base.HypervisorError]) -> base.HypervisorError:
    if _QUOTA.search(message):
        return base.QuotaExceeded(message)
    if _BUSY.search(message):
        return base.TransientError(message)
    if _NOT_FOUND.search(message):
        return base.NotFound(message)
    return default(message)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class OvirtSession(base.Driver):
    """An oVirt engine's API connection: SSO login, TLS, errors, polling."""

    def __init__(self, connection: base.Connection) -> None:
        super().__init__(connection)
        self._sdk: sdk.Connection | None = None
        self._ca_file: str | None = None
        self._ca_cleanup: weakref.finalize | None = None
        self._tokens: list[str] = []  # SSO tokens this driver was given: redacted everywhere

    # --- connection ------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """Belt and braces: no library message may carry the password or a token."""
        for secret in (self.connection.password, self.connection.token, *self._tokens):
            if secret:
                text = text.replace(secret, "[redacted]")
        return " ".join(text.split())[:400]

    def _urls(self) -> tuple[str, str]:
        """(origin, API URL) from the endpoint."""
        c = self.connection
        parts = urlsplit(c.endpoint if "://" in c.endpoint else f"https://{c.endpoint}")
        if parts.scheme != "https" or not parts.hostname:
            raise base.InvalidRequest(
                f"ovirt: endpoint {c.endpoint!r}: use https://ENGINE/ovirt-engine/api"
            )
        origin = f"https://{parts.netloc}"
        return origin, origin + (parts.path.rstrip("/") or "/ovirt-engine/api")

    def _curl_failure(self, errno: int, text: str, what: str) -> base.HypervisorError:
        where = self.connection.endpoint
        detail = self._scrub(text)
        if errno in _CURL_TLS:
            return base.TLSFailed(f"ovirt: TLS with {where} failed: {detail}")
        # Refused, reset, name not resolved, timed out.
        return base.TransientError(f"ovirt: {what}: {where} unreachable: {detail} (curl {errno})")

    def _sdk_error(self, exc: sdk.Error, what: str) -> base.HypervisorError:
        fault = exc.fault
        if fault is not None and (fault.reason or fault.detail):
            detail = ": ".join(str(x) for x in (fault.reason, fault.detail) if x)
        else:
            detail = str(exc)
        code = exc.code
        message = f"ovirt: {what}: {self._scrub(detail)}" + (f" (HTTP {code})" if code else "")
        if not code:
            curl = _CURL_IN_TEXT.search(str(exc))
            if curl:
                return self._curl_failure(int(curl[1]), curl[3], what)
            if isinstance(exc, sdk.AuthError):
                return base.AuthenticationFailed(message)
            # E.g. an HTML page where XML was due: not an engine API at that path.
            return base.PermanentError(message)
        if code in (401, 403):
            return base.AuthenticationFailed(message)
        if code == 404:
            return base.NotFound(message)
        if code >= 500 or code in (408, 429):
            return _classify(message, base.TransientError)
        if code == 400:
            return _classify(message, base.InvalidRequest)
        return _classify(message, base.PermanentError)

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Turn the SDK's and pycurl's exceptions into base.py's. ``from None``
        drops the original, whose text or traceback might hold a secret."""
        try:
            yield
        except base.HypervisorError:
            raise
        except sdk.Error as exc:
            raise self._sdk_error(exc, what) from None
        except pycurl.error as exc:
            errno, text = (exc.args + (0, ""))[:2]
            raise self._curl_failure(int(errno), str(text), what) from None

    def _tls(self, curl: pycurl.Curl) -> None:
        verify = self.connection.verify_tls
        curl.setopt(pycurl.SSL_VERIFYPEER, 1 if verify else 0)
        curl.setopt(pycurl.SSL_VERIFYHOST, 2 if verify else 0)
        if verify and self._ca_path():
            curl.setopt(pycurl.CAINFO, self._ca_path())

    def _ca_path(self) -> str | None:
        """A private file holding ca_pem (libcurl reads CAs from files), or None
        for the system's CAs."""
        if not self.connection.verify_tls or not self.connection.ca_pem:
            return None
        if self._ca_file is None:
            fd, path = tempfile.mkstemp(prefix="pureboot-ovirt-ca-", suffix=".pem")  # 0600
            with os.fdopen(fd, "w") as file:
                file.write(self.connection.ca_pem)
            # Deleted on close(), or when the driver is collected if nobody closes it.
            self._ca_cleanup = weakref.finalize(self, _remove, path)
            self._ca_file = path
        return self._ca_file

    def _sso(self, url: str, form: dict[str, str], what: str) -> dict[str, Any]:
        """One SSO call (form in, JSON out), within the connection timeout."""
        curl = pycurl.Curl()
        body = io.BytesIO()
        try:
            curl.setopt(pycurl.URL, url)
            curl.setopt(pycurl.POST, 1)
            curl.setopt(pycurl.COPYPOSTFIELDS, urlencode(form))
            curl.setopt(pycurl.HTTPHEADER, ["Accept: application/json"])
            curl.setopt(pycurl.TIMEOUT_MS, max(1, int(self.connection.timeout * 1000)))
            curl.setopt(pycurl.NOSIGNAL, 1)
            curl.setopt(pycurl.WRITEDATA, body)
            self._tls(curl)
            with self._calling(what):
                curl.perform()
            status = int(curl.getinfo(pycurl.RESPONSE_CODE))
            content_type = str(curl.getinfo(pycurl.CONTENT_TYPE) or "")
        finally:
            curl.close()
        if "json" not in content_type:
            message = f"ovirt: {what}: HTTP {status} ({content_type or 'no content type'})"
            if status >= 500:
                raise base.TransientError(message)
            raise base.InvalidRequest(f"{message}: is {url} an oVirt engine's SSO?")
        try:
            answer = json.loads(body.getvalue().decode())
        except ValueError:
            raise base.TransientError(f"ovirt: {what}: the answer is not JSON") from None
        if isinstance(answer, list):
            answer = answer[0] if answer else {}
        if isinstance(answer, dict) and "error" in answer:
            # OpenID errors have error/error_description, the engine's error_code/error.
            code = answer.get("error_code") or answer.get("error")
            text = answer.get("error_description") or answer.get("error")
            message = f"ovirt: {what}: {self._scrub(f'{code}: {text}')} (HTTP {status})"
            if status >= 500:
                raise base.TransientError(message)
            raise base.AuthenticationFailed(message)
        return answer if isinstance(answer, dict) else {}

    def _open(self) -> sdk.Connection:
        if self._sdk is not None:
            return self._sdk
        c = self.connection
        origin, api = self._urls()
        if not c.username or not c.password:
            raise base.AuthenticationFailed("ovirt: the credential needs a username and password")
        form = {
            "grant_type": "password",
            "scope": "ovirt-app-api",
            "username": c.username,
            "password": c.password,
        }
        login = f"log in to {origin} as {c.username}"
        token = self._sso(f"{origin}/ovirt-engine/sso/oauth/token", form, login).get("access_token")
        if not isinstance(token, str) or not token:
            raise base.TransientError(f"ovirt: {login}: the SSO answer holds no access token")
        self._tokens.append(token)
        with self._calling(f"connect to {api}"):
            self._sdk = sdk.Connection(
                url=api,
                # Kept for the SDK's one retry when the engine drops the token.
                username=c.username,
                password=c.password,
                token=token,
                insecure=not c.verify_tls,
                ca_file=self._ca_path(),
                timeout=max(1, math.ceil(c.timeout)),  # whole seconds, 0 would be forever
                sso_url=f"{origin}/ovirt-engine/sso/oauth/token",
                sso_revoke_url=f"{origin}/ovirt-engine/services/sso-logout",
            )
        return self._sdk

    def close(self) -> None:
        """Revoke the SSO token (within the timeout), drop the connection and the CA file."""
        if self._sdk is not None:
            connection, self._sdk = self._sdk, None
            try:
                # The current token (the SDK renews it once if the engine drops it);
                # revoked here rather than by the SDK, whose revoke has no timeout.
                token = connection.authenticate()
                connection.close(logout=False)
            except Exception:  # noqa: BLE001 - close() never raises
                token = None
            if token:
                try:
                    origin, _api = self._urls()
                    form = {"scope": "ovirt-app-api", "token": token}
                    self._sso(f"{origin}/ovirt-engine/services/sso-logout", form, "log out")
                except base.HypervisorError:
                    pass  # the token expires on its own
        if self._ca_cleanup is not None:
            self._ca_cleanup()
            self._ca_file = self._ca_cleanup = None

    def _system(self) -> Any:
        return self._open().system_service()

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        self._open()
        with self._calling(what):
            return call()

    def _until(self, what: str, done: Callable[[], bool]) -> None:
        """Poll ``done`` until it holds, within the connection timeout."""
        deadline = time.monotonic() + self.connection.timeout
        delay = 0.05
        while not done():
            if time.monotonic() + delay > deadline:
                raise base.TransientError(
                    f"ovirt: {what}: not done after {self.connection.timeout:g} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
