"""Where external secret stores are and how PureBoot signs in to them.

settings.py calls :func:`vault_config` and :func:`azure_config` with the
environment. Only file paths and identifiers are read from it: tokens,
AppRole secret IDs and client secrets stay in files (read at use time by
:mod:`credentials.stores`), so no secret sits in the settings text or in a
process listing. Nothing here imports Django models.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

_MOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_PREFIX = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]{0,127}/){1,8}")
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_/-]{0,254}")
_UUID_LIKE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _get(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


def _url(env: Mapping[str, str], name: str) -> str:
    value = _get(env, name).rstrip("/")
    if value and not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/-]*)?", value):
        raise ImproperlyConfigured(f"{name} must be an http(s) URL such as https://vault:8200")
    return value


def _file(env: Mapping[str, str], name: str) -> str:
    value = _get(env, name)
    if value and not os.path.isabs(value):
        raise ImproperlyConfigured(f"{name} must be an absolute path")
    return value


def _timeout(env: Mapping[str, str]) -> int:
    raw = _get(env, "PUREBOOT_SECRET_STORE_TIMEOUT") or "10"
    if not raw.isdigit() or not 1 <= int(raw) <= 300:
        raise ImproperlyConfigured("PUREBOOT_SECRET_STORE_TIMEOUT must be 1-300 (seconds)")
    return int(raw)


def vault_config(env: Mapping[str, str]) -> dict[str, Any]:
    """HashiCorp Vault / OpenBao: {} when PUREBOOT_VAULT_URL is unset.

    Exactly one way to sign in: a token file, or an AppRole role ID with a
    secret-ID file.
    """
    url = _url(env, "PUREBOOT_VAULT_URL")
    names = (
        "PUREBOOT_VAULT_TOKEN_FILE",
        "PUREBOOT_VAULT_ROLE_ID",
        "PUREBOOT_VAULT_SECRET_ID_FILE",
        "PUREBOOT_VAULT_NAMESPACE",
        "PUREBOOT_VAULT_CA_FILE",
        "PUREBOOT_VAULT_APPROLE_MOUNT",
        "PUREBOOT_VAULT_MOUNTS",
        "PUREBOOT_VAULT_PATH_PREFIX",
    )
    if not url:
        stray = [n for n in names if _get(env, n)]
        if stray:
            raise ImproperlyConfigured(f"{stray[0]} is set but PUREBOOT_VAULT_URL is not")
        return {}
    token_file = _file(env, "PUREBOOT_VAULT_TOKEN_FILE")
    role_id = _get(env, "PUREBOOT_VAULT_ROLE_ID")
    secret_id_file = _file(env, "PUREBOOT_VAULT_SECRET_ID_FILE")
    if bool(role_id) != bool(secret_id_file):
        raise ImproperlyConfigured(
            "PUREBOOT_VAULT_ROLE_ID and PUREBOOT_VAULT_SECRET_ID_FILE go together (AppRole)"
        )
    if bool(token_file) == bool(role_id):
        raise ImproperlyConfigured(
            "PUREBOOT_VAULT_URL needs one way to sign in: PUREBOOT_VAULT_TOKEN_FILE, or "
            "PUREBOOT_VAULT_ROLE_ID with PUREBOOT_VAULT_SECRET_ID_FILE"
        )
    if role_id and not _UUID_LIKE.fullmatch(role_id):
        raise ImproperlyConfigured("PUREBOOT_VAULT_ROLE_ID must be a role ID (letters, digits, -)")
    namespace = _get(env, "PUREBOOT_VAULT_NAMESPACE").strip("/")
    if namespace and not _NAMESPACE.fullmatch(namespace):
        raise ImproperlyConfigured("PUREBOOT_VAULT_NAMESPACE must be a namespace path such as a/b")
    ca_file = _file(env, "PUREBOOT_VAULT_CA_FILE")
    if ca_file and not os.path.isfile(ca_file):
        raise ImproperlyConfigured(f"PUREBOOT_VAULT_CA_FILE: no such file {ca_file}")
    approle_mount = _get(env, "PUREBOOT_VAULT_APPROLE_MOUNT") or "approle"
    if not _MOUNT.fullmatch(approle_mount):
        raise ImproperlyConfigured("PUREBOOT_VAULT_APPROLE_MOUNT must be a mount name")
    mounts = [m.strip() for m in (_get(env, "PUREBOOT_VAULT_MOUNTS") or "secret").split(",")]
    for mount in mounts:
        if not _MOUNT.fullmatch(mount):
            raise ImproperlyConfigured(
                "PUREBOOT_VAULT_MOUNTS must be comma-separated KV v2 mount names such as secret"
            )
    prefix = _get(env, "PUREBOOT_VAULT_PATH_PREFIX")
    if prefix and not _PREFIX.fullmatch(prefix.rstrip("/") + "/"):
        raise ImproperlyConfigured(
            "PUREBOOT_VAULT_PATH_PREFIX must be a relative path such as pureboot/ "
            "(no '..', no leading /)"
        )
    return {
        "url": url,
        "token_file": token_file,
        "role_id": role_id,
        "secret_id_file": secret_id_file,
        "approle_mount": approle_mount,
        "namespace": namespace,
        "ca_file": ca_file,
        "mounts": mounts,
        "path_prefix": prefix.rstrip("/") + "/" if prefix else "",
        "timeout": _timeout(env),
    }


def azure_config(env: Mapping[str, str]) -> dict[str, Any]:
    """Azure Key Vault: {} when PUREBOOT_AZURE_KEYVAULT_URL is unset.

    A service principal (tenant, client ID, client-secret file); without the
    three, azure-identity's DefaultAzureCredential (managed identity, the
    AZURE_* variables of the SDK, a signed-in Azure CLI).
    """
    url = _url(env, "PUREBOOT_AZURE_KEYVAULT_URL")
    names = (
        "PUREBOOT_AZURE_TENANT_ID",
        "PUREBOOT_AZURE_CLIENT_ID",
        "PUREBOOT_AZURE_CLIENT_SECRET_FILE",
        "PUREBOOT_AZURE_AUTHORITY_HOST",
        "PUREBOOT_AZURE_CA_FILE",
    )
    if not url:
        stray = [n for n in names if _get(env, n)]
        if stray:
            raise ImproperlyConfigured(f"{stray[0]} is set but PUREBOOT_AZURE_KEYVAULT_URL is not")
        return {}
    if not url.startswith("https://"):
        raise ImproperlyConfigured("PUREBOOT_AZURE_KEYVAULT_URL must be https:// (Key Vault)")
    tenant = _get(env, "PUREBOOT_AZURE_TENANT_ID")
    client = _get(env, "PUREBOOT_AZURE_CLIENT_ID")
    secret_file = _file(env, "PUREBOOT_AZURE_CLIENT_SECRET_FILE")
    given = [bool(tenant), bool(client), bool(secret_file)]
    if any(given) and not all(given):
        raise ImproperlyConfigured(
            "PUREBOOT_AZURE_TENANT_ID, PUREBOOT_AZURE_CLIENT_ID and "
            "PUREBOOT_AZURE_CLIENT_SECRET_FILE go together (a service principal)"
        )
    for name, value in (("TENANT_ID", tenant), ("CLIENT_ID", client)):
        if value and not _UUID_LIKE.fullmatch(value):
            raise ImproperlyConfigured(f"PUREBOOT_AZURE_{name} must be an ID (letters, digits, -)")
    authority = _url(env, "PUREBOOT_AZURE_AUTHORITY_HOST")
    if authority and not authority.startswith("https://"):
        raise ImproperlyConfigured("PUREBOOT_AZURE_AUTHORITY_HOST must be https://")
    ca_file = _file(env, "PUREBOOT_AZURE_CA_FILE")
    if ca_file and not os.path.isfile(ca_file):
        raise ImproperlyConfigured(f"PUREBOOT_AZURE_CA_FILE: no such file {ca_file}")
    return {
        "url": url,
        "tenant_id": tenant,
        "client_id": client,
        "client_secret_file": secret_file,
        "authority_host": authority,
        "ca_file": ca_file,
        "timeout": _timeout(env),
    }
