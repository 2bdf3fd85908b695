"""Azure Key Vault through its SDK (azure-keyvault-secrets, azure-identity).

Signs in as the service principal of PUREBOOT_AZURE_TENANT_ID/CLIENT_ID with
the client secret read from PUREBOOT_AZURE_CLIENT_SECRET_FILE at use time,
or, without them, with DefaultAzureCredential (managed identity and the
SDK's own AZURE_* variables). The secret's value is the password; setting
it creates a new version, whose ID is returned.
"""

from __future__ import annotations

from azure.core import exceptions as azure_errors
from azure.identity import ClientSecretCredential, DefaultAzureCredential
from azure.keyvault.secrets import SecretClient
from django.conf import settings

from ..errors import StoreError
from ..models import Credential
from .files import secret_file

STORE = "Azure Key Vault"


def _where(credential: Credential) -> str:
    return f"{STORE} {credential.reference}"


def _client() -> SecretClient:
    config = settings.PUREBOOT_AZURE_KEYVAULT
    if not config:
        raise StoreError(f"{STORE} is not configured (PUREBOOT_AZURE_KEYVAULT_URL is unset)")
    transport = {"connection_timeout": config["timeout"], "read_timeout": config["timeout"]}
    if config["ca_file"]:
        transport["connection_verify"] = config["ca_file"]
    if config["client_id"]:
        identity = ClientSecretCredential(
            config["tenant_id"],
            config["client_id"],
            secret_file(config["client_secret_file"], "PUREBOOT_AZURE_CLIENT_SECRET_FILE", STORE),
            authority=config["authority_host"] or None,
            # Only the configured authority is asked; no discovery round trip elsewhere.
            disable_instance_discovery=bool(config["authority_host"]),
            **transport,
        )
    else:
        identity = DefaultAzureCredential(**transport)
    return SecretClient(vault_url=config["url"], credential=identity, **transport)


def _why(exc: Exception) -> str:
    """Our own words: SDK messages can carry request details."""
    if isinstance(exc, azure_errors.ClientAuthenticationError):
        return "sign-in refused: check the tenant, client ID and client secret"
    if isinstance(exc, azure_errors.ResourceNotFoundError):
        return "no such secret or version (404)"
    if isinstance(exc, azure_errors.HttpResponseError) and exc.status_code in (401, 403):
        return "permission denied: the principal's access policy or role does not allow this"
    if isinstance(exc, azure_errors.HttpResponseError):
        return f"the store answered HTTP {exc.status_code}"
    if isinstance(exc, azure_errors.ServiceRequestError | azure_errors.ServiceResponseError):
        return "unreachable, or TLS verification failed (PUREBOOT_AZURE_CA_FILE?)"
    return f"unexpected answer ({type(exc).__name__})"


def read(credential: Credential) -> tuple[str, str]:
    """(value, version ID) of the referenced secret."""
    client = _client()
    try:
        with client:
            secret = client.get_secret(
                credential.external_path, credential.external_version or None
            )
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - SDK errors, translated
        raise StoreError(f"{_where(credential)}: {_why(exc)}") from None
    if secret.value is None:
        raise StoreError(f"{_where(credential)}: the secret has no value")
    return secret.value, secret.properties.version or ""


def write(credential: Credential, value: str) -> str:
    """Set a new version of the secret to ``value``; its version ID."""
    client = _client()
    try:
        with client:
            secret = client.set_secret(credential.external_path, value)
    except Exception as exc:  # noqa: BLE001 - SDK errors, translated
        raise StoreError(f"{_where(credential)}: writing a new version: {_why(exc)}") from None
    return secret.properties.version or ""
