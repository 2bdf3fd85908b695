"""HashiCorp Vault / OpenBao KV v2 through hvac.

Signs in with the token in PUREBOOT_VAULT_TOKEN_FILE, or by AppRole (role ID
and the secret ID in PUREBOOT_VAULT_SECRET_ID_FILE) for each operation; the
files are read at use time, so a renewed token needs no restart. The
password is one field (``external_key``, default ``password``) of the KV
secret; rotation writes the secret back with that field changed, with
check-and-set on the version read, so a concurrent writer is refused rather
than overwritten.
"""

from __future__ import annotations

from typing import Any

import hvac
import requests
from django.conf import settings
from hvac import exceptions as hvac_errors

from ..errors import StoreError
from ..models import Credential
from .files import secret_file

STORE = "HashiCorp Vault/OpenBao"


def _where(credential: Credential) -> str:
    return f"{STORE} {credential.reference}"


def _client() -> hvac.Client:
    config = settings.PUREBOOT_VAULT
    if not config:
        raise StoreError(f"{STORE} is not configured (PUREBOOT_VAULT_URL is unset)")
    client = hvac.Client(
        url=config["url"],
        namespace=config["namespace"] or None,
        verify=config["ca_file"] or True,
        timeout=config["timeout"],
    )
    if config["token_file"]:
        client.token = secret_file(config["token_file"], "PUREBOOT_VAULT_TOKEN_FILE", STORE)
        return client
    secret_id = secret_file(config["secret_id_file"], "PUREBOOT_VAULT_SECRET_ID_FILE", STORE)
    try:
        client.auth.approle.login(
            role_id=config["role_id"], secret_id=secret_id, mount_point=config["approle_mount"]
        )
    except Exception as exc:  # noqa: BLE001 - translated below, without the secret ID
        raise StoreError(f"{STORE}: AppRole sign-in failed: {_why(exc)}") from None
    return client


def _why(exc: Exception) -> str:
    """Our own words for what went wrong: a server's message could quote the request."""
    if isinstance(exc, hvac_errors.Forbidden):
        return "permission denied (403): the token or its policy does not allow this"
    if isinstance(exc, hvac_errors.InvalidPath):
        return "no such secret, version or mount (404)"
    if isinstance(exc, hvac_errors.InvalidRequest):
        return "the store refused the request (400; e.g. it changed since it was read)"
    if isinstance(exc, hvac_errors.VaultDown):
        return "the store is sealed or in maintenance (503)"
    if isinstance(exc, hvac_errors.VaultError):
        return f"the store answered an error ({type(exc).__name__})"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification failed (PUREBOOT_VAULT_CA_FILE?)"
    if isinstance(exc, requests.exceptions.Timeout):
        return "no answer within PUREBOOT_SECRET_STORE_TIMEOUT"
    if isinstance(exc, requests.exceptions.RequestException):
        return "unreachable"
    return f"unexpected answer ({type(exc).__name__})"


def _read_version(client: hvac.Client, credential: Credential, version: str) -> dict[str, Any]:
    try:
        answer = client.secrets.kv.v2.read_secret_version(
            path=credential.external_path,
            mount_point=credential.external_mount,
            version=int(version) if version else None,
            raise_on_deleted_version=True,
        )
        return answer["data"]
    except StoreError:
        raise
    except (KeyError, TypeError):
        raise StoreError(f"{_where(credential)}: not a KV v2 answer") from None
    except Exception as exc:  # noqa: BLE001 - hvac and requests errors, translated
        raise StoreError(f"{_where(credential)}: {_why(exc)}") from None


def read(credential: Credential) -> tuple[str, str]:
    """(password, version) of the referenced secret field."""
    data = _read_version(_client(), credential, credential.external_version)
    fields = data.get("data") or {}
    value = fields.get(credential.vault_key)
    if not isinstance(value, str):
        raise StoreError(
            f"{_where(credential)}: the secret has no text field {credential.vault_key!r}"
        )
    return value, str((data.get("metadata") or {}).get("version", ""))


def write(credential: Credential, value: str) -> str:
    """Write the secret with its password field set to ``value``; the new version number."""
    client = _client()
    current = _read_version(client, credential, "")
    fields = dict(current.get("data") or {})
    fields[credential.vault_key] = value
    version = (current.get("metadata") or {}).get("version")
    try:
        answer = client.secrets.kv.v2.create_or_update_secret(
            path=credential.external_path,
            mount_point=credential.external_mount,
            secret=fields,
            cas=version,
        )
        return str(answer["data"]["version"])
    except (KeyError, TypeError):
        raise StoreError(f"{_where(credential)}: not a KV v2 answer") from None
    except Exception as exc:  # noqa: BLE001 - hvac and requests errors, translated
        raise StoreError(f"{_where(credential)}: writing a new version: {_why(exc)}") from None
