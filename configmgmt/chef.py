"""Chef Infra Server API client, its requests signed per Mixlib-Authentication 1.3.

Each request carries ``X-Ops-Sign: algorithm=sha256;version=1.3``, the
user id, a UTC timestamp, the base64 SHA-256 of the body and the server API
version, and ``X-Ops-Authorization-N`` headers holding, in 60-character
lines, the base64 RSA (PKCS#1 v1.5, SHA-256) signature of the canonical
request::

    Method:POST
    Path:/organizations/ORG/nodes
    X-Ops-Content-Hash:<base64 sha256 of the body>
    X-Ops-Sign:version=1.3
    X-Ops-Timestamp:2026-12-04T22:00:00Z
    X-Ops-UserId:<client name>
    X-Ops-Server-API-Version:1

The client name and its private key are the credential named by
PUREBOOT_CHEF_CREDENTIAL (username and private key).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings

from credentials import services as credentials
from credentials.models import Credential

from .errors import ConfigMgmtError

TIMEOUT_SECONDS = 30
SERVER_API_VERSION = "1"


def canonical_path(path: str) -> str:
    """The path as signed: no query, repeated slashes collapsed, no trailing slash."""
    path = re.sub(r"/+", "/", path.split("?", 1)[0])
    return path.rstrip("/") or "/"


def canonical_request(
    method: str, path: str, content_hash: str, timestamp: str, user_id: str
) -> bytes:
    return "\n".join(
        (
            f"Method:{method.upper()}",
            f"Path:{canonical_path(path)}",
            f"X-Ops-Content-Hash:{content_hash}",
            "X-Ops-Sign:version=1.3",
            f"X-Ops-Timestamp:{timestamp}",
            f"X-Ops-UserId:{user_id}",
            f"X-Ops-Server-API-Version:{SERVER_API_VERSION}",
        )
    ).encode()


def signed_headers(
    key: rsa.RSAPrivateKey, user_id: str, method: str, path: str, body: bytes
) -> dict[str, str]:
    """The authentication headers of one request."""
    timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
    signature = key.sign(
        canonical_request(method, path, content_hash, timestamp, user_id),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    encoded = base64.b64encode(signature).decode()
    headers = {
        "X-Ops-Sign": "algorithm=sha256;version=1.3",
        "X-Ops-Userid": user_id,
        "X-Ops-Timestamp": timestamp,
        "X-Ops-Content-Hash": content_hash,
        "X-Ops-Server-API-Version": SERVER_API_VERSION,
    }
    for index in range(0, len(encoded), 60):
        headers[f"X-Ops-Authorization-{index // 60 + 1}"] = encoded[index : index + 60]
    return headers


class ChefServer:
    """The nodes and clients of one organisation on a Chef Infra Server."""

    def __init__(self, url: str, org: str, user_id: str, private_key_pem: str) -> None:
        try:
            key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigMgmtError("the Chef client key is not an unencrypted PEM key") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigMgmtError("the Chef client key is not an RSA key")
        self.key = key
        self.url = url.rstrip("/")
        self.prefix = requests.utils.urlparse(self.url).path.rstrip("/")
        self.org = org
        self.user_id = user_id
        self.session = requests.Session()
        self.session.verify = settings.PUREBOOT_CONFIGMGMT_CA_FILE or True

    def request(self, method: str, path: str, data: Any = None) -> requests.Response:
        """A signed request to ``/organizations/<org><path>``."""
        full = f"{self.prefix}/organizations/{self.org}{path}"
        body = b"" if data is None else json.dumps(data).encode()
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "X-Chef-Version": "18.0.0",
            **signed_headers(self.key, self.user_id, method, full, body),
        }
        base = self.url[: len(self.url) - len(self.prefix)] if self.prefix else self.url
        try:
            return self.session.request(
                method, f"{base}{full}", data=body or None, headers=headers, timeout=TIMEOUT_SECONDS
            )
        except requests.RequestException as exc:
            raise ConfigMgmtError(f"cannot reach the Chef server at {self.url}: {exc}") from exc

    def _check(self, answer: requests.Response, what: str, ok: tuple[int, ...]) -> None:
        if answer.status_code not in ok:
            raise ConfigMgmtError(f"Chef server: {what} answered HTTP {answer.status_code}")

    def create_node(self, name: str, attributes: dict[str, Any]) -> bool:
        """Create node ``name``; False when it existed (then it is kept as it is)."""
        body = {
            "name": name,
            "chef_type": "node",
            "json_class": "Chef::Node",
            "chef_environment": "_default",
            "run_list": [],
            "normal": {"pureboot": attributes},
            "default": {},
            "override": {},
            "automatic": {},
        }
        answer = self.request("POST", "/nodes", body)
        self._check(answer, f"creating node {name}", (201, 409))
        return answer.status_code == 201

    def create_client(self, name: str) -> str:
        """Create API client ``name`` with a new key; its private key ('' if it existed)."""
        answer = self.request("POST", "/clients", {"name": name, "create_key": True})
        self._check(answer, f"creating client {name}", (201, 409))
        if answer.status_code == 409:
            return ""
        try:
            return str(answer.json()["chef_key"]["private_key"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigMgmtError(f"Chef server: client {name} came back without a key") from exc

    def delete_node(self, name: str) -> None:
        self._check(self.request("DELETE", f"/nodes/{name}"), f"deleting node {name}", (200, 404))

    def delete_client(self, name: str) -> None:
        answer = self.request("DELETE", f"/clients/{name}")
        self._check(answer, f"deleting client {name}", (200, 404))


def connect(actor: str) -> ChefServer | None:
    """The configured Chef server, or None when PUREBOOT_CHEF_SERVER_URL is empty."""
    if not settings.PUREBOOT_CHEF_SERVER_URL:
        return None
    name = settings.PUREBOOT_CHEF_CREDENTIAL
    credential = Credential.objects.filter(name=name).first()
    if credential is None:
        raise ConfigMgmtError(f"the Chef credential {name} does not exist")
    secret = credentials.reveal(credential, actor, reason="Chef Infra Server API client key")
    return ChefServer(
        settings.PUREBOOT_CHEF_SERVER_URL,
        settings.PUREBOOT_CHEF_ORG,
        secret.username,
        secret.private_key,
    )
