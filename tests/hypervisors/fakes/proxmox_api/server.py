"""The fake PVE's HTTP side: ``/api2/json`` paths, form and query parameters,
PVE's answer and error shapes (see the package docstring)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..common import RestHandler
from .state import ApiError, PVEState


class Handler(RestHandler):
    """Serves ``/api2/json/...`` from ``self.server.pve`` (a :class:`.vms.FakePVE`)."""

    def serve(self, method: str) -> None:
        pve: PVEState = self.server.pve  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        body = self.body().decode()
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        path = unquote(url.path)
        try:
            if not path.startswith("/api2/json/"):
                raise ApiError(501, f"Method '{method} {path}' not implemented")
            path = path[len("/api2/json") :].rstrip("/")
            with pve.lock:
                pve.requests.append((method, path, params))
                if (method, path) == ("POST", "/access/ticket"):
                    data = pve.ticket(params)
                else:
                    user = pve.authenticate(method, path, self.headers)
                    data = pve.dispatch(method, path, params, user)
        except ApiError as exc:
            self._reply(exc.code, None, exc.message, exc.errors)
            return
        self._reply(200, data)

    def _reply(
        self, code: int, data: Any, message: str = "OK", errors: dict[str, str] | None = None
    ) -> None:
        body: dict[str, Any] = {"data": data}
        if errors:
            body["errors"] = errors
        if code >= 400:
            body["message"] = message + "\n"
        raw = json.dumps(body).encode()
        self.send_response(code, " ".join(message.split()))
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
