"""PureBoot's Ed25519 key for wipe certificates (cryptography).

The private key lives in ``PUREBOOT_SIGNING_KEY_FILE`` (default
``var/signing/ed25519.pem``, mode 600, made on first use like the Fernet
key file beside it). Every public key PureBoot has signed with is kept as
``<key id>.pub`` in the same folder, so certificates signed before a key
change still verify. The key id is the SHA-256 of the raw public key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from django.conf import settings


class SigningKeyError(Exception):
    """The key file is unreadable or not an Ed25519 key."""


def key_path() -> Path:
    return Path(settings.PUREBOOT_SIGNING_KEY_FILE)


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _create(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:  # O_EXCL: two processes starting at once keep one key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def private_key() -> Ed25519PrivateKey:
    """The signing key, made on first use."""
    path = key_path()
    if not path.exists():
        _create(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path}: cannot read the signing key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: not an Ed25519 private key")
    _remember(key.public_key())
    return key


def _remember(public: Ed25519PublicKey) -> None:
    pub_file = key_path().parent / f"{key_id(public)}.pub"
    if not pub_file.exists():
        pub_file.write_bytes(public_pem(public))


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """The base64 signature of ``data`` with ``key`` (from :func:`private_key`)."""
    return base64.b64encode(key.sign(data)).decode("ascii")


def load_public(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise SigningKeyError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError("not an Ed25519 public key")
    return key


def known_public_key(kid: str) -> Ed25519PublicKey | None:
    """A public key PureBoot has signed with, by id (None if unknown here)."""
    if not kid or not all(c in "0123456789abcdef" for c in kid) or len(kid) != 64:
        return None
    if key_path().exists():
        private_key()  # the current key's public half is kept on file (never made here)
    pub_file = key_path().parent / f"{kid}.pub"
    if not pub_file.exists():
        return None
    return load_public(pub_file.read_bytes())


def verify(public: Ed25519PublicKey, data: bytes, signature_b64: str) -> bool:
    try:
        public.verify(base64.b64decode(signature_b64, validate=True), data)
    except (InvalidSignature, ValueError):
        return False
    return True
