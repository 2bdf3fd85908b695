"""Reading a store's sign-in secret from its file, at use time, never echoing it."""

from __future__ import annotations

from ..errors import StoreError

MAX_FILE_BYTES = 16384


def secret_file(path: str, setting: str, store: str) -> str:
    """The stripped text of ``path`` (named by ``setting``); StoreError naming the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read(MAX_FILE_BYTES + 1).strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise StoreError(f"{store}: cannot read {setting} {path}: {why}") from None
    if not value or len(value) > MAX_FILE_BYTES:
        raise StoreError(f"{store}: {setting} {path} holds no usable value")
    return value
