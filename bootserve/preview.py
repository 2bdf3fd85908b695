"""The boot scripts each firmware path would get now, without changing anything."""

from __future__ import annotations

from nodes.choices import Firmware
from nodes.models import Node
from workflows.context import PREVIEW_TOKEN

from . import grub, ipxe, pxelinux, raspberrypi
from .engine import Client, Kind, decide
from .install import node_install_boot
from .services import facts, policy

FIRMWARE_PATHS = {"ipxe-bios": "bios", "ipxe-uefi": "uefi"}


def boot_scripts(node: Node, base_url: str, poll_url: str) -> dict[str, str | None]:
    """The boot files per firmware path; None where the machine would get no answer.

    A PC gets its iPXE script per firmware path with the PXELINUX (BIOS) and
    GRUB (UEFI) configs; a Raspberry Pi, whose bootloader runs none of those,
    gets its ``config.txt`` and ``cmdline.txt`` (None: "file not found", so it
    boots its next boot mode).
    """
    if node.firmware == Firmware.PI:
        return raspberrypi.preview(node, base_url, PREVIEW_TOKEN)
    out: dict[str, str | None] = {}
    settings = policy()
    for label, firmware in FIRMWARE_PATHS.items():
        decision = decide(facts(node), Client(firmware=firmware), settings)
        if decision.kind == Kind.IGNORE:
            out[label] = None
            continue
        install = None
        if decision.kind == Kind.INSTALL:
            install = node_install_boot(node, token=PREVIEW_TOKEN, base_url=base_url)
        out[label] = ipxe.render(
            decision,
            node_name=str(node),
            state=node.state,
            poll_url=poll_url,
            poll_seconds=settings.poll_seconds,
            wait_seconds=settings.wait_seconds,
            install=install,
        )
        other = {"bios": ("pxelinux-bios", pxelinux), "uefi": ("grub-uefi", grub)}[firmware]
        out[other[0]] = other[1].render(
            decision, node_name=str(node), state=node.state, install=install
        )
    return out
