"""A FAKE Azure Key Vault and Microsoft Entra (AAD) token endpoint, over HTTPS, for tests.

No Key Vault server runs outside Azure, so this local HTTP server speaks the
documented REST it needs, on one port with a self-signed certificate:

- Entra ID v2: ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and
  ``POST /{tenant}/oauth2/v2.0/token`` (client-credentials grant; a wrong
  client secret is 401 ``invalid_client``).
- Key Vault secrets (``api-version`` required): ``GET /secrets/{name}[/{version}]``
  and ``PUT /secrets/{name}`` (a new version each time), answering the
  SecretBundle shape; a request without a bearer token gets the 401
  ``WWW-Authenticate: Bearer authorization=..., resource=...`` challenge the
  SDK follows; unknown secrets or versions are 404 ``SecretNotFound``; secrets
  listed in ``forbidden`` are 403 ``Forbidden`` (an access policy denying).
"""

from __future__ import annotations

import datetime
import json
import secrets
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TENANT = "00000000-1111-2222-3333-444444444444"
# The SDK checks that the vault's host lies under the challenge's resource
# (as myvault.vault.azure.net under vault.azure.net): the fake is reached by
# a name under .fake.test, which the tests resolve to 127.0.0.1.
RESOURCE_HOST = "vault.fake.test"
VAULT_HOST = "pureboot." + RESOURCE_HOST
CLIENT_ID = "55555555-6666-7777-8888-999999999999"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) files for 127.0.0.1, the certificate its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName(VAULT_HOST)]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "fake-azure.crt", directory / "fake-azure.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class FakeAzure:
    """Start with :meth:`start`; ``url`` is both the vault URL and the authority host."""

    def __init__(self, directory: Path):
        self.cert_file, key_file = self_signed(directory)
        self.client_secret = "cs-" + secrets.token_hex(12)
        self.tokens: set[str] = set()
        self.secrets: dict[str, list[tuple[str, str]]] = {}  # name -> [(version, value)]
        self.forbidden: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_PUT(self) -> None:
                fake._handle(self, "PUT")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"https://{VAULT_HOST}:{self.port}"
        self.resource = f"https://{RESOURCE_HOST}:{self.port}"

    def start(self) -> FakeAzure:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def put(self, name: str, value: str) -> str:
        version = secrets.token_hex(16)
        self.secrets.setdefault(name, []).append((version, value))
        return version

    # --- protocol ---------------------------------------------------------------
    def _send(self, handler, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _body(self, handler) -> bytes:
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))

    def _handle(self, handler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = parse_qs(parts.query)
        segments = [s for s in parts.path.split("/") if s]
        self.requests.append((method, parts.path))
        if segments[:1] == [TENANT]:
            return self._entra(handler, method, segments[1:])
        if segments[:1] == ["secrets"]:
            return self._vault(handler, method, segments[1:], query)
        return self._send(handler, 404, {"error": {"code": "NotFound", "message": "no route"}})

    def _entra(self, handler, method: str, rest: list[str]) -> None:
        base = f"{self.url}/{TENANT}"
        if method == "GET" and rest == ["v2.0", ".well-known", "openid-configuration"]:
            return self._send(
                handler,
                200,
                {
                    "issuer": f"{base}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "jwks_uri": f"{base}/discovery/v2.0/keys",
                },
            )
        if method == "POST" and rest == ["oauth2", "v2.0", "token"]:
            form = parse_qs(self._body(handler).decode())
            ok = (
                form.get("grant_type") == ["client_credentials"]
                and form.get("client_id") == [CLIENT_ID]
                and form.get("client_secret") == [self.client_secret]
            )
            if not ok:
                return self._send(
                    handler,
                    401,
                    {
                        "error": "invalid_client",
                        "error_description": "AADSTS7000215: Invalid client secret provided.",
                    },
                )
            token = "at-" + secrets.token_hex(16)
            self.tokens.add(token)
            return self._send(
                handler,
                200,
                {"token_type": "Bearer", "expires_in": 3599, "access_token": token},
            )
        return self._send(handler, 404, {"error": "not_found"})

    def _challenge(self, handler) -> None:
        challenge = f'Bearer authorization="{self.url}/{TENANT}", resource="{self.resource}"'
        self._send(
            handler,
            401,
            {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer"}},
            {"WWW-Authenticate": challenge},
        )

    def _bundle(self, name: str, version: str, value: str) -> dict:
        now = int(time.time())
        return {
            "value": value,
            "id": f"{self.url}/secrets/{name}/{version}",
            "attributes": {"enabled": True, "created": now, "updated": now},
        }

    def _vault(self, handler, method: str, rest: list[str], query: dict) -> None:
        body = self._body(handler)
        if not query.get("api-version"):
            return self._send(
                handler,
                400,
                {"error": {"code": "BadParameter", "message": "api-version is required"}},
            )
        auth = handler.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self._challenge(handler)
        if auth.removeprefix("Bearer ") not in self.tokens:
            return self._send(
                handler, 401, {"error": {"code": "Unauthorized", "message": "bad token"}}
            )
        name = rest[0] if rest else ""
        if name in self.forbidden:
            return self._send(
                handler,
                403,
                {"error": {"code": "Forbidden", "message": "The user does not have secrets get"}},
            )
        if method == "PUT" and len(rest) == 1:
            version = self.put(name, json.loads(body)["value"])
            return self._send(handler, 200, self._bundle(name, version, self.secrets[name][-1][1]))
        versions = self.secrets.get(name, [])
        wanted = rest[1] if len(rest) > 1 else ""
        found = [v for v in versions if v[0] == wanted] if wanted else versions[-1:]
        if method != "GET" or not found:
            return self._send(
                handler,
                404,
                {"error": {"code": "SecretNotFound", "message": f"A secret {name} was not found"}},
            )
        return self._send(handler, 200, self._bundle(name, *found[0]))
