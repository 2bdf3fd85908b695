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

from . import grub, pxelinux, raspberrypi, records
from .engine import Client, Kind
from .models import Outcome, Protocol
from .services import handle_boot
from .tftp import static_file


def _base_url() -> str:
    return (settings.PUREBOOT_PUBLIC_URL or "http://127.0.0.1:8000").rstrip("/")


def resolve(path: str, peer: tuple, *, protocol: str = Protocol.TFTP) -> bytes | Path | None:
    """Bytes of a rendered config, a Path of a static file, or None (not found).

    A per-machine config is a boot decision, recorded as asked over
    ``protocol`` (the ARM64 GRUB asks the same names over HTTP).
    """
    root = Path(settings.PUREBOOT_BOOT_ROOT)
    for module, firmware in ((pxelinux, "bios"), (grub, "uefi")):
        parsed = module.parse_config_name(path)
        if parsed is not None:
            arch = grub.config_arch(path) if module is grub else None
            return _config(module, firmware, parsed, peer[0], arch, path, protocol)
    pi = raspberrypi.parse_path(path)
    if pi is not None:
        return raspberrypi.serve(pi, base_url=_base_url(), boot_root=root, source=peer[0])
    return static_file(root, path)


def _config(
    module,
    firmware: str,
    parsed: tuple[str, str | None],
    source: str,
    arch: str | None,
    path: str,
    protocol: str,
) -> bytes | None:
    kind, value = parsed
    if kind == "default":
        return module.render_default().encode("ascii", "replace")
    client = Client(
        macs=(value,) if kind == "mac" else (),
        uuid=value if kind == "uuid" else None,
        firmware=firmware,
        arch=arch,
    )
    answer = handle_boot(
        client,
        base_url=_base_url(),
        source=source,
        protocol=protocol,
        asked=path,
        via=f"{'PXELINUX' if module is pxelinux else 'GRUB'} config",
    )
    if answer.decision.kind == Kind.IGNORE:
        return None
    if kind == "uuid" and answer.node is None:
        # PXELINUX asks for its UUID name before its MAC name: an unknown UUID
        # (which cannot register a machine: no MAC) is "not found", so the
        # loader goes on to the name that registers it.
        return None
    node = answer.node
    text = module.render(
        answer.decision,
        node_name=str(node) if node else "unknown machine",
        state=node.state if node else "unknown",
        install=answer.install,
    )
    return text.encode("ascii", "replace") if text is not None else None


#: What a TFTP transfer record may say happened (``record``'s ``outcome``).
TRANSFER_OUTCOMES = frozenset(
    {Outcome.FILE_SENT, Outcome.NOT_FOUND, Outcome.REFUSED, Outcome.FAILED}
)


def record(fields: dict) -> None:
    """Record one finished or refused TFTP transfer the daemon reported; never raises.

    The daemon's only write, kept here beside its reads so the boundary stays
    one module: ``fields`` (peer, path, outcome, answer) comes from
    ``bootserve.tftp.BootServer`` through the helper's socket and is checked
    again here. The transfer names no machine, so the record carries the
    address only (a config's boot decision is recorded with its node when it
    is decided, in ``_config``).
    """
    outcome = fields.get("outcome") if isinstance(fields, dict) else None
    if outcome not in TRANSFER_OUTCOMES:
        return
    records.record_boot(
        Protocol.TFTP,
        outcome,
        address=str(fields.get("peer", "")),
        asked=str(fields.get("path", "")),
        answer=str(fields.get("answer", "")),
    )
