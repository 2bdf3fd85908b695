"""The errors credential operations raise, apart so the store clients can raise them too."""

from __future__ import annotations


class CredentialError(Exception):
    """Base for refused credential operations."""


class StoreError(CredentialError):
    """An external secret store is unreachable, refuses, or lacks the secret.

    The message names the store and the reference, never a token or a value.
    """
