"""The TFTP names a Raspberry Pi asks for, recognised without Django (the daemon's loop uses it).

A Pi 4 or 5 EEPROM bootloader prefixes every name with a folder chosen by
its ``TFTP_PREFIX`` setting:

| TFTP_PREFIX | folder                      | example                          |
|-------------|-----------------------------|----------------------------------|
| 0 (default) | the board serial, 8 hex     | ``1234abcd/start4.elf``          |
| 2           | the MAC address with dashes | ``dc-a6-32-01-36-c2/start4.elf`` |
| 1, string   | none (``TFTP_PREFIX_STR=``  | ``start4.elf``                   |
|  empty)     | left empty)                 |                                  |

A Pi 3 (and 2B v1.2) boot ROM first fetches ``bootcode.bin`` from the root,
then ``<serial>/start.elf``, and falls back to ``start.elf`` at the root
when the folder is missing. Names at the root can only be told apart by the
requesting address, which dnsmasq leased (``bootserve.leases``).
"""

from __future__ import annotations

import re

SERIAL_DIR = re.compile(r"[0-9a-fA-F]{8}")
MAC_DIR = re.compile(r"(?:[0-9a-fA-F]{2}-){5}[0-9a-fA-F]{2}")
#: The Pi 3 boot ROM's first file: firmware only, the same for every Pi.
BOOTCODE = "bootcode.bin"
#: Firmware the bootloader and the firmware load (no recovery.elf or
#: pieeprom.* that would rewrite a Pi's bootloader).
FIRMWARE = re.compile(
    r"(?:start|fixup)[A-Za-z0-9_]*\.(?:elf|dat)|bootcode\.bin|[A-Za-z0-9_.+-]+\.dtb"
    r"|overlays/[A-Za-z0-9_.+-]+"
)
#: Names a Pi asks for at the TFTP root (prefix "none", or a Pi 3's fallback)
#: that depend on which Pi asks: firmware, its configs, its kernel and initramfs.
ROOT_NAME = re.compile(
    r"(?:start|fixup)[A-Za-z0-9_]*\.(?:elf|dat)|config\.txt|cmdline\.txt"
    r"|[A-Za-z0-9_.+-]+\.dtb|overlays/[A-Za-z0-9_.+-]+|kernel[A-Za-z0-9_]*\.img"
    r"|initramfs[A-Za-z0-9_]*"
)


def is_pi_folder(name: str) -> bool:
    """Whether ``name`` is a Pi's per-board folder: its serial or its MAC."""
    return bool(SERIAL_DIR.fullmatch(name) or MAC_DIR.fullmatch(name))


def is_pi_root_name(path: str) -> bool:
    """Whether ``path`` (no folder, or ``overlays/…``) is a name a Pi asks for at the root."""
    return bool(ROOT_NAME.fullmatch(path.lstrip("/")))
