"""A fake Chef Infra Server (no Chef server installs here), speaking its documented API.

It checks every request's Mixlib-Authentication 1.3 signature as the Chef
docs describe ("Authentication Headers", chef.io/docs/server/api_chef_server):
``X-Ops-Sign: algorithm=sha256;version=1.3``; ``X-Ops-Content-Hash`` is the
base64 SHA-256 of the body; the ``X-Ops-Authorization-N`` lines joined are
the base64 RSA PKCS#1 v1.5 SHA-256 signature, by the user's public key, of

    Method:<METHOD>\\nPath:<path>\\nX-Ops-Content-Hash:<hash>\\nX-Ops-Sign:version=1.3\\n
    X-Ops-Timestamp:<timestamp>\\nX-Ops-UserId:<user>\\nX-Ops-Server-API-Version:<version>

and the timestamp is within 15 minutes. It implements the endpoints
PureBoot calls: ``POST /organizations/ORG/nodes`` and ``/clients`` (201, or
409 when the name exists), ``DELETE .../nodes/NAME`` and ``.../clients/NAME``
(200, or 404). Written independently of configmgmt.chef, so a signing bug
there fails here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


class FakeChef:
    def __init__(self, org: str, users: dict[str, rsa.RSAPublicKey]) -> None:
        self.org = org
        self.users = dict(users)
        self.nodes: dict[str, dict] = {}
        self.clients: dict[str, rsa.RSAPublicKey] = {}
        self.refused: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def verify(self, method: str, path: str, headers, body: bytes) -> str | None:
        """Why the request's signature is wrong, or None when it is right."""
        if headers.get("X-Ops-Sign") != "algorithm=sha256;version=1.3":
            return "X-Ops-Sign is not algorithm=sha256;version=1.3"
        user = headers.get("X-Ops-Userid", "")
        if user not in self.users:
            return f"unknown user {user!r}"
        content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
        if headers.get("X-Ops-Content-Hash") != content_hash:
            return "X-Ops-Content-Hash does not match the body"
        timestamp = headers.get("X-Ops-Timestamp", "")
        try:
            when = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return "bad timestamp"
        if abs(datetime.now(UTC) - when) > timedelta(minutes=15):
            return "timestamp out of range"
        version = headers.get("X-Ops-Server-API-Version", "0")
        lines, n = [], 1
        while headers.get(f"X-Ops-Authorization-{n}"):
            lines.append(headers[f"X-Ops-Authorization-{n}"])
            n += 1
        canonical = (
            f"Method:{method}\nPath:{path}\nX-Ops-Content-Hash:{content_hash}\n"
            f"X-Ops-Sign:version=1.3\nX-Ops-Timestamp:{timestamp}\nX-Ops-UserId:{user}\n"
            f"X-Ops-Server-API-Version:{version}"
        ).encode()
        try:
            self.users[user].verify(
                base64.b64decode("".join(lines)), canonical, padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, ValueError):
            return "signature does not verify"
        return None

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, data: dict) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _serve(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                problem = fake.verify(method, self.path, self.headers, body)
                if problem:
                    fake.refused.append(problem)
                    return self._answer(401, {"error": [problem]})
                prefix = f"/organizations/{fake.org}/"
                if not self.path.startswith(prefix):
                    return self._answer(404, {"error": ["no such organization"]})
                kind, _, name = self.path[len(prefix) :].partition("/")
                store = {"nodes": fake.nodes, "clients": fake.clients}.get(kind)
                if store is None:
                    return self._answer(404, {"error": ["not found"]})
                if method == "POST" and not name:
                    data = json.loads(body)
                    if data["name"] in store:
                        return self._answer(409, {"error": ["Conflict"]})
                    uri = f"{fake.url}{prefix}{kind}/{data['name']}"
                    if kind == "nodes":
                        store[data["name"]] = data
                        return self._answer(201, {"uri": uri})
                    key = new_key()
                    store[data["name"]] = key.public_key()
                    answer = {"uri": uri}
                    if data.get("create_key"):
                        answer["chef_key"] = {"name": "default", "private_key": pem(key)}
                    return self._answer(201, answer)
                if method == "DELETE" and name:
                    if store.pop(name, None) is None:
                        return self._answer(404, {"error": ["not found"]})
                    return self._answer(200, {"name": name})
                return self._answer(405, {"error": ["method not allowed"]})

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self._serve("POST")

            def do_DELETE(self) -> None:  # noqa: N802
                self._serve("DELETE")

        return Handler
