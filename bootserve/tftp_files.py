"""What the TFTP daemon serves for a path: a boot-root file or a rendered config.

This is the daemon's one window on the database (through the decision
engine and the boot service), so the boundary could later become an RPC call.
PXELINUX and GRUB fetch their per-node config by MAC (or UUID); that fetch is
a boot request like an iPXE one: it may register a machine or start its
install, exactly as ``/boot/ipxe`` would. A Raspberry Pi fetches
``<serial>/...``; the first of those files in a boot is its boot request (see
``bootserve.raspberrypi``).
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from . import grub, pxelinux, raspberrypi
from .engine import Client, Kind
from .services import handle_boot
from .tftp import static_file

# (protocol, outcome) of a boot decision a config was rendered from.
Decided = tuple[str, str]


def _base_url() -> str:
    return (settings.PUREBOOT_PUBLIC_URL or "http://127.0.0.1:8000").rstrip("/")


def resolve(path: str, peer: tuple) -> bytes | Path | None:
    """Bytes of a rendered config, a Path of a static file, or None (not found)."""
    return resolve_decided(path, peer)[0]


def resolve_decided(path: str, peer: tuple) -> tuple[bytes | Path | None, Decided | None]:
    """``resolve``'s answer and, for a PXELINUX or GRUB per-machine config or a
    Pi's boot request, the boot decision (protocol, outcome), for the decision counter."""
    root = Path(settings.PUREBOOT_BOOT_ROOT)
    for module, firmware, protocol in ((pxelinux, "bios", "pxelinux"), (grub, "uefi", "grub")):
        parsed = module.parse_config_name(path)
        if parsed is not None:
            arch = grub.config_arch(path) if module is grub else None
            result, outcome = _config(module, firmware, parsed, peer[0], arch)
            return result, (protocol, outcome) if outcome else None
    pi = raspberrypi.parse_path(path)
    if pi is not None:
        result, outcome = raspberrypi.serve_decided(
            pi, base_url=_base_url(), boot_root=root, source=peer[0]
        )
        return result, ("pi", outcome) if outcome else None
    return static_file(root, path), None


def _config(
    module, firmware: str, parsed: tuple[str, str | None], source: str, arch: str | None = None
) -> tuple[bytes | None, str | None]:
    """The rendered config and the decision's kind (None for the default config: no machine)."""
    kind, value = parsed
    if kind == "default":
        return module.render_default().encode("ascii", "replace"), None
    client = Client(
        macs=(value,) if kind == "mac" else (),
        uuid=value if kind == "uuid" else None,
        firmware=firmware,
        arch=arch,
    )
    answer = handle_boot(client, base_url=_base_url(), source=source)
    outcome = answer.decision.kind.value
    if answer.decision.kind == Kind.IGNORE:
        return None, outcome
    if kind == "uuid" and answer.node is None:
        # PXELINUX asks for its UUID name before its MAC name: an unknown UUID
        # (which cannot register a machine: no MAC) is "not found", so the
        # loader goes on to the name that registers it.
        return None, None
    node = answer.node
    text = module.render(
        answer.decision,
        node_name=str(node) if node else "unknown machine",
        state=node.state if node else "unknown",
        install=answer.install,
    )
    return (text.encode("ascii", "replace") if text is not None else None), outcome
