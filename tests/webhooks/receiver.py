"""A real HTTP receiver for webhook tests (``http.server`` in a thread).

It checks every request's signature as a receiver should (with the secret
the test gives it) and answers by path:

- ``/ok``: 200 when the signature verifies, 401 otherwise;
- ``/flaky``: 500 to the first request, then as ``/ok``;
- ``/hang``: says nothing for ``hang_seconds`` (the sender must time out);
- ``/redirect``: 302 to ``/ok`` (the sender must not follow it);
- ``/gzip-garbage``: 200, ``Content-Encoding: gzip`` and a body that is not gzip;
- ``/stall-body``: 200 and a Content-Length, then one body byte every half
  second for ``hang_seconds`` (no single wait is long);
- ``/nul``: 500 with NUL and other control bytes in the body; ``/nul-ok``: the same as 200.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from webhooks import signing


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    secret: str = ""
    hang_seconds: float = 3.0
    requests: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None
    _flaky_seen: int = 0

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                verified = signing.verify(
                    receiver.secret, body, self.headers.get(signing.SIGNATURE_HEADER, "")
                )
                receiver.requests.append(
                    Received(self.path, dict(self.headers.items()), body, verified)
                )
                if self.path == "/hang":
                    time.sleep(receiver.hang_seconds)
                    self._answer(200, b"late")
                elif self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", f"{receiver.base}/ok")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/gzip-garbage":
                    self._answer(200, b"this is not gzip at all", {"Content-Encoding": "gzip"})
                elif self.path == "/stall-body":
                    self._stall()
                elif self.path in ("/nul", "/nul-ok"):
                    self._answer(
                        500 if self.path == "/nul" else 200, b"bad\x00body\x07\x1b[31m end"
                    )
                elif self.path == "/flaky" and receiver._flaky_seen == 0:
                    receiver._flaky_seen += 1
                    self._answer(500, b"boom " * 400)
                elif verified:
                    self._answer(200, b"thanks")
                else:
                    self._answer(401, b"bad signature")

            def _stall(self) -> None:
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.flush()
                    until = time.monotonic() + receiver.hang_seconds
                    while time.monotonic() < until:
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.5)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _answer(self, code: int, body: bytes, headers: dict | None = None) -> None:
                try:
                    self.send_response(code)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
