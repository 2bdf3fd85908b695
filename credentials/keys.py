"""Where the keys that encrypt credentials at rest come from.

``PUREBOOT_FERNET_KEYS`` (comma-separated, the first one encrypts, all of
them decrypt) wins. When it is unset, the keys live in
``$PUREBOOT_VAR_DIR/fernet_keys``, one per line, first line primary,
created with mode 600 on first start, like the Django secret key. Nothing
here imports Django models: settings.py calls :func:`load_keys`.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

ENV_VAR = "PUREBOOT_FERNET_KEYS"
KEY_FILE_NAME = "fernet_keys"
GENERATE_HINT = (
    'generate one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)


def _check(keys: list[str], source: str) -> list[str]:
    if not keys:
        raise ImproperlyConfigured(f"{source} holds no key; {GENERATE_HINT}")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            # Never echo the value: it may be a real key with a typo.
            raise ImproperlyConfigured(
                f"{source}: key {position} of {len(keys)} is not a valid Fernet key "
                f"(32 bytes, url-safe base64, 44 characters); {GENERATE_HINT}"
            ) from None
    if len(set(keys)) != len(keys):
        raise ImproperlyConfigured(f"{source} lists the same key twice")
    return keys


def parse(raw: str, source: str = ENV_VAR) -> list[str]:
    """Split a comma- or newline-separated key list and check every key."""
    keys = [k.strip() for k in raw.replace("\n", ",").split(",") if k.strip()]
    return _check(keys, source)


def key_file(var_dir: Path) -> Path:
    return Path(var_dir) / KEY_FILE_NAME


def load_keys(var_dir: Path) -> tuple[list[str], str]:
    """Return (keys, source): the environment's keys, or the key file's (made if missing).

    Raises ``ImproperlyConfigured`` naming ``PUREBOOT_FERNET_KEYS`` or the
    file when a key is malformed.
    """
    raw = os.environ.get(ENV_VAR, "")
    if raw.strip():
        return parse(raw, ENV_VAR), ENV_VAR
    path = key_file(var_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        source = f"{path} (used because {ENV_VAR} is unset)"
        return parse(path.read_text(), source), str(path)
    key = Fernet.generate_key().decode()
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return [key], str(path)


def write_key_file(path: Path, keys: list[str]) -> None:
    """Replace the key file atomically (mode 600): a crash leaves the old or the new file."""
    _check(keys, str(path))
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(k + "\n" for k in keys))
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
