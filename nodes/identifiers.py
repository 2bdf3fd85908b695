"""Normalisation of the identifiers a machine presents: MAC, SMBIOS UUID, Pi serial.

Each ``normalize_*`` returns the canonical form or raises ``ValueError`` with a
message that names the accepted forms, so the API, the admin, the boot path
and the import commands all refuse the same input with the same words.
"""

from __future__ import annotations

import re
import uuid

MAC_FORMS = "aa:bb:cc:dd:ee:ff, AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff or aabbccddeeff"
UUID_FORMS = (
    "a UUID such as 4c4c4544-0042-3510-8052-b7c04f4e3732 (braces, upper case and missing "
    "hyphens are accepted)"
)
PI_SERIAL_FORMS = (
    "8 hexadecimal digits such as 1a2b3c4d (a 0x prefix or the 16-digit "
    "/proc/cpuinfo form 000000001a2b3c4d is accepted)"
)

_MAC_PATTERNS = (
    re.compile(
        r"^([0-9a-f]{2})([:-])([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})$"
    ),
    re.compile(r"^([0-9a-f]{4})\.([0-9a-f]{4})\.([0-9a-f]{4})$"),
    re.compile(r"^([0-9a-f]{12})$"),
)
_HEX = re.compile(r"^[0-9a-f]+$")
# Firmware that never had a UUID programmed reports one of these; they are
# shared by many machines, so they must never identify one.
_PLACEHOLDER_UUIDS = {
    uuid.UUID(int=0),
    uuid.UUID("ffffffff-ffff-ffff-ffff-ffffffffffff"),
    uuid.UUID("03000200-0400-0500-0006-000700080009"),
}


def normalize_mac(value: object) -> str:
    """Return ``value`` as a lower-case colon-separated MAC address."""
    if not isinstance(value, str) or len(value) > 32:
        raise ValueError(f"Enter a MAC address as {MAC_FORMS}.")
    text = value.strip().lower()
    for pattern in _MAC_PATTERNS:
        if pattern.match(text):
            digits = re.sub(r"[^0-9a-f]", "", text)
            break
    else:
        raise ValueError(f"{value!r} is not a MAC address; use {MAC_FORMS}.")
    mac = ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    if int(digits[:2], 16) & 1:
        raise ValueError(f"{mac} is a multicast address, not a network interface's MAC.")
    if digits == "000000000000":
        raise ValueError("00:00:00:00:00:00 is not a network interface's MAC.")
    return mac


def normalize_uuid(value: object) -> str:
    """Return ``value`` as a canonical lower-case hyphenated UUID string."""
    if isinstance(value, uuid.UUID):
        parsed = value
    else:
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError(f"Enter {UUID_FORMS}.")
        text = value.strip().strip("{}").replace("-", "").lower()
        if len(text) != 32 or not _HEX.match(text):
            raise ValueError(f"{value!r} is not a UUID; enter {UUID_FORMS}.")
        parsed = uuid.UUID(hex=text)
    if parsed in _PLACEHOLDER_UUIDS:
        raise ValueError(
            f"{parsed} is a placeholder that firmware reports when no UUID was programmed; "
            "it does not identify one machine."
        )
    return str(parsed)


def normalize_pi_serial(value: object) -> str:
    """Return a Raspberry Pi serial as 8 lower-case hex digits."""
    if not isinstance(value, str) or len(value) > 32:
        raise ValueError(f"Enter a Raspberry Pi serial as {PI_SERIAL_FORMS}.")
    text = value.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if len(text) == 16 and text.startswith("00000000"):
        text = text[8:]
    if len(text) != 8 or not _HEX.match(text):
        raise ValueError(f"{value!r} is not a Raspberry Pi serial; enter {PI_SERIAL_FORMS}.")
    return text


_SERIAL_RE = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?$")


def normalize_serial(value: object) -> str:
    """Return a hardware serial number with surrounding blanks removed.

    Serials are printable ASCII, at most 128 characters (SMBIOS strings);
    control characters are refused rather than stored.
    """
    if not isinstance(value, str):
        raise ValueError("Enter the serial number as text.")
    text = value.strip()
    if text and not _SERIAL_RE.match(text):
        raise ValueError(
            "A serial number is 1 to 128 printable ASCII characters with no control characters."
        )
    return text
