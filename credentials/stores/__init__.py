"""External secret stores: one client module per store behind the same three calls.

``read(credential)`` returns the password the reference points at (and the
version read), ``write(credential, value)`` stores a new version and returns
its number or ID, ``check(credential)`` asks that the secret exists. Each
raises :class:`~credentials.errors.StoreError` naming the store and the
reference, never a token. Only :mod:`credentials.services` calls these.
"""

from __future__ import annotations

from types import ModuleType

from ..errors import StoreError
from ..models import Credential, SecretStore
from . import azure, vault

CLIENTS: dict[str, ModuleType] = {SecretStore.VAULT: vault, SecretStore.AZURE: azure}


def _client(credential: Credential) -> ModuleType:
    client = CLIENTS.get(credential.store)
    if client is None:
        raise StoreError(f"credential {credential.name}: unknown secret store {credential.store!r}")
    return client


def read(credential: Credential) -> tuple[str, str]:
    """(password, version) of the secret ``credential`` refers to."""
    return _client(credential).read(credential)


def write(credential: Credential, value: str) -> str:
    """Store ``value`` as a new version of the referenced secret; its version."""
    return _client(credential).write(credential, value)


def check(credential: Credential) -> None:
    """Raise StoreError unless the referenced secret (and version, and key) exists."""
    read(credential)
