"""salt-api (rest_cherrypy) client: minion keys and state runs.

Speaks the documented REST interface: ``POST /login`` with username,
password and eauth gives a token; ``POST /`` with ``X-Auth-Token`` runs a
list of lowstate chunks (``client=wheel`` for ``key.list_all``,
``key.accept`` and ``key.delete``; ``client=local`` for ``state.apply``).
The login comes from the credential named by PUREBOOT_SALT_API_CREDENTIAL.
"""

from __future__ import annotations

from typing import Any

import requests
from django.conf import settings

from credentials import services as credentials
from credentials.models import Credential
from pureboot.logredact import redact
from workflows.registry import redact_text

from .errors import ConfigMgmtError

TIMEOUT_SECONDS = 30


class SaltApi:
    """One logged-in salt-api session."""

    def __init__(self, url: str, username: str, password: str, eauth: str) -> None:
        self.url = url.rstrip("/")
        self.hidden = [v for v in (password,) if v]
        self.session = requests.Session()
        self.session.verify = settings.PUREBOOT_CONFIGMGMT_CA_FILE or True
        self.session.headers["Accept"] = "application/json"
        answer = self._post("/login", {"username": username, "password": password, "eauth": eauth})
        try:
            self.session.headers["X-Auth-Token"] = answer["return"][0]["token"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ConfigMgmtError("salt-api's login answer has no token") from exc

    def _post(self, path: str, body: Any, timeout: float = TIMEOUT_SECONDS) -> Any:
        try:
            answer = self.session.post(f"{self.url}{path}", json=body, timeout=timeout)
        except requests.RequestException as exc:
            raise ConfigMgmtError(f"cannot reach salt-api at {self.url}: {exc}") from exc
        if answer.status_code in (401, 403):
            raise ConfigMgmtError(f"salt-api refused the login (HTTP {answer.status_code})")
        if answer.status_code != 200:
            raise ConfigMgmtError(f"salt-api answered HTTP {answer.status_code} to {path}")
        try:
            return answer.json()
        except ValueError as exc:
            raise ConfigMgmtError(f"salt-api did not answer JSON to {path}") from exc

    def run(self, lowstate: dict[str, Any], timeout: float = TIMEOUT_SECONDS) -> Any:
        """The first return of one lowstate chunk."""
        answer = self._post("/", [lowstate], timeout=timeout)
        try:
            return answer["return"][0]
        except (KeyError, IndexError, TypeError) as exc:
            raise ConfigMgmtError(f"salt-api's answer to {lowstate['fun']} has no return") from exc

    def _wheel(self, fun: str, **kwargs: Any) -> Any:
        result = self.run({"client": "wheel", "fun": fun, **kwargs})
        data = result.get("data") if isinstance(result, dict) else None
        if not isinstance(data, dict) or not data.get("success", False):
            raise ConfigMgmtError(f"salt {fun} failed: {str(data)[:300]}")
        return data.get("return")

    def keys(self) -> dict[str, list[str]]:
        """``key.list_all``: minions (accepted), minions_pre (waiting), rejected, denied."""
        listing = self._wheel("key.list_all")
        if not isinstance(listing, dict):
            raise ConfigMgmtError("salt key.list_all returned no listing")
        return {k: list(v) for k, v in listing.items() if isinstance(v, list)}

    def accept(self, minion: str) -> None:
        self._wheel("key.accept", match=minion)

    def delete(self, minion: str) -> None:
        self._wheel("key.delete", match=minion)

    def scrub(self, text: str) -> str:
        """``text`` without the login's password nor what the audit redactor hides."""
        return redact(redact_text(text, self.hidden))

    def apply_state(self, minion: str, states: str, timeout: int) -> str:
        """Run ``state.apply states`` on ``minion``; a summary. Raises when any state failed.

        The summary (and the error) is redacted: the salt-api password and
        every token, password or key :func:`pureboot.logredact.redact` finds.
        """
        result = self.run(
            {"client": "local", "tgt": minion, "fun": "state.apply", "arg": [states]},
            timeout=timeout,
        )
        outcome = result.get(minion) if isinstance(result, dict) else None
        if not isinstance(outcome, dict):
            raise ConfigMgmtError(
                self.scrub(f"salt state.apply on {minion}: {str(outcome)[:2000]}")
            )
        failed = [k for k, v in outcome.items() if not (isinstance(v, dict) and v.get("result"))]
        lines = [
            f"{'ok' if k not in failed else 'FAILED'} {k}: {str(v.get('comment', ''))[:200]}"
            for k, v in outcome.items()
            if isinstance(v, dict)
        ]
        summary = self.scrub("\n".join(lines))
        if failed:
            raise ConfigMgmtError(f"salt state.apply on {minion}: {len(failed)} failed\n{summary}")
        return summary


def connect(actor: str) -> SaltApi | None:
    """A session with the configured salt-api, or None when PUREBOOT_SALT_API_URL is empty."""
    if not settings.PUREBOOT_SALT_API_URL:
        return None
    name = settings.PUREBOOT_SALT_API_CREDENTIAL
    credential = Credential.objects.filter(name=name).first()
    if credential is None:
        raise ConfigMgmtError(f"the salt-api credential {name} does not exist")
    secret = credentials.reveal(credential, actor, reason="salt-api login")
    return SaltApi(
        settings.PUREBOOT_SALT_API_URL,
        secret.username,
        secret.password,
        settings.PUREBOOT_SALT_API_EAUTH,
    )
