"""What the TFTP daemon serves for a path: a boot-root file or a rendered config.

This is the daemon's one read-only window on the database (through the
decision engine), so the boundary could later become an RPC call.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from .tftp import static_file


def resolve(path: str, peer: tuple) -> bytes | Path | None:
    """Bytes of a rendered config, a Path of a static file, or None (not found)."""
    dynamic = _dynamic(path)
    if dynamic is not None:
        return dynamic
    return static_file(Path(settings.PUREBOOT_BOOT_ROOT), path)


def _dynamic(path: str) -> bytes | None:
    """Per-node configs rendered from the decision engine (PXELINUX, GRUB)."""
    return None
