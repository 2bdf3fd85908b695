"""Choosing how to sanitize each disk, by what it is and what it offers.

PureBoot follows the categories of NIST SP 800-88 Rev. 1 ("Guidelines for
Media Sanitization"): *Clear* protects against simple, non-invasive recovery
(overwriting the user-addressable blocks); *Purge* protects against
laboratory recovery (commands that reach every block the device holds,
over-provisioned and remapped ones included, or destroy the key the data is
encrypted with). The agent reports each disk's capabilities in its
inventory; :func:`plan` picks the strongest method the disk offers (or the
first that meets the category the request demands) and says why when none
does, before anything is written.

| method                  | tool                              | category |
|-------------------------|-----------------------------------|----------|
| nvme-sanitize-crypto    | nvme sanitize --sanact=4          | Purge    |
| nvme-sanitize-block     | nvme sanitize --sanact=2          | Purge    |
| nvme-format-crypto      | nvme format --ses=2               | Purge    |
| ata-security-erase      | hdparm --security-erase(-enhanced)| Purge (HDD; SSD: enhanced only) |
| scsi-sanitize           | sg_sanitize --block / --crypto    | Purge    |
| mmc-secure-discard      | blkdiscard --secure               | Purge    |
| nvme-format             | nvme format --ses=1               | Clear    |
| ata-security-erase (SSD, normal) | hdparm --security-erase  | Clear    |
| overwrite               | dd from /dev/zero (random first when passes > 1) | Clear |

NVMe Format with "user data erase" (SES=1) counts as Clear here: the
device does not say whether it reaches over-provisioned blocks. Whatever the
method, the agent reads the disk back afterwards (see ``verify``), because a
tool's exit status proves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .choices import Category

BEST = "best"
# Results a method leaves on the medium: "uniform" (all zeros, or all ones
# after some erase commands) is checked block by block; "changed" (crypto
# erase: the old key is gone, what reads back is noise) is checked by
# comparing sampled regions with their digests taken before the wipe.
UNIFORM = "uniform"
CHANGED = "changed"
MAX_PASSES = 7


class WipeImpossible(Exception):
    """No method the disk offers meets the category the request demands."""


@dataclass(frozen=True)
class Method:
    name: str
    category: str
    expect: str
    description: str


METHODS = {
    m.name: m
    for m in (
        Method(
            "nvme-sanitize-crypto",
            Category.PURGE,
            CHANGED,
            "NVMe Sanitize, crypto erase (nvme sanitize --sanact=4)",
        ),
        Method(
            "nvme-sanitize-block",
            Category.PURGE,
            UNIFORM,
            "NVMe Sanitize, block erase (nvme sanitize --sanact=2)",
        ),
        Method(
            "nvme-format-crypto",
            Category.PURGE,
            CHANGED,
            "NVMe Format with cryptographic erase (nvme format --ses=2)",
        ),
        Method(
            "ata-security-erase-enhanced",
            Category.PURGE,
            UNIFORM,
            "ATA Security Erase Unit, enhanced (hdparm --security-erase-enhanced)",
        ),
        Method(
            "ata-security-erase",
            Category.PURGE,
            UNIFORM,
            "ATA Security Erase Unit (hdparm --security-erase)",
        ),
        Method(
            "scsi-sanitize",
            Category.PURGE,
            UNIFORM,
            "SCSI Sanitize, block erase (sg_sanitize --block)",
        ),
        Method(
            "mmc-secure-discard",
            Category.PURGE,
            UNIFORM,
            "eMMC secure erase (blkdiscard --secure)",
        ),
        Method(
            "nvme-format",
            Category.CLEAR,
            UNIFORM,
            "NVMe Format with user data erase (nvme format --ses=1)",
        ),
        Method(
            "ata-security-erase-ssd",
            Category.CLEAR,
            UNIFORM,
            "ATA Security Erase Unit on a solid-state drive (hdparm --security-erase)",
        ),
        Method("overwrite", Category.CLEAR, UNIFORM, "Overwrite every block (dd)"),
    )
}


def offered(disk: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The methods ``disk`` offers, strongest first, and why others are not offered."""
    caps = disk.get("capabilities") or {}
    transport = disk.get("transport") or ""
    methods: list[str] = []
    notes: list[str] = []
    if transport == "nvme":
        sanitize = caps.get("nvme_sanitize") or []
        if "crypto" in sanitize:
            methods.append("nvme-sanitize-crypto")
        if "block" in sanitize:
            methods.append("nvme-sanitize-block")
        if not sanitize:
            notes.append("the controller does not support NVMe Sanitize")
        if caps.get("nvme_format_crypto"):
            methods.append("nvme-format-crypto")
    ata = caps.get("ata_security") or {}
    if transport in ("sata", "ata"):
        if not ata.get("supported"):
            notes.append("the drive does not support the ATA Security feature set")
        elif ata.get("frozen"):
            notes.append(
                "ATA security is frozen (the firmware froze it at boot; suspend and "
                "resume the machine or hot-plug the drive to unfreeze it)"
            )
        elif ata.get("locked"):
            notes.append("the drive is locked with an ATA password PureBoot does not know")
        elif ata.get("enhanced"):
            methods.append("ata-security-erase-enhanced")
        elif disk.get("rotational"):
            methods.append("ata-security-erase")
        else:
            methods.append("ata-security-erase-ssd")
    if transport in ("sas", "scsi") and caps.get("scsi_sanitize"):
        methods.append("scsi-sanitize")
    if transport == "mmc" and caps.get("secure_discard"):
        methods.append("mmc-secure-discard")
    if transport == "nvme" and caps.get("nvme_format"):
        methods.append("nvme-format")
    methods.append("overwrite")
    # Strongest first: every Purge method before every Clear one.
    methods.sort(key=lambda name: METHODS[name].category != Category.PURGE)
    return methods, notes


def plan(disk: dict[str, Any], category: str, passes: int = 1) -> dict[str, Any]:
    """The wipe step's parameters for ``disk``; raises WipeImpossible with the reason."""
    methods, notes = offered(disk)
    if category == Category.PURGE:
        methods = [m for m in methods if METHODS[m].category == Category.PURGE]
        if not methods:
            why = "; ".join(notes) or "it offers no Purge command"
            raise WipeImpossible(
                f"disk {label(disk)} cannot be purged: {why}. Nothing was written; "
                "ask again with category clear, or destroy the disk physically."
            )
    method = METHODS[methods[0]]
    return {
        "disk": {k: disk.get(k) for k in ("name", "path", "model", "serial", "size", "transport")},
        "method": method.name,
        "category": str(method.category),
        "expect": method.expect,
        "passes": passes if method.name == "overwrite" else 1,
        "description": method.description,
        "not_offered": notes,
    }


def plan_inventory(inventory: dict[str, Any] | None, category: str) -> list[dict] | str:
    """Each reported disk's method for ``category`` (a dry run's view), or why unknown."""
    disks = (inventory or {}).get("disks")
    if not disks:
        return "unknown until the agent reports this machine's disks (it does so first)"
    planned = []
    for disk in disks:
        try:
            step = plan(disk, category)
        except WipeImpossible as exc:
            planned.append({"disk": label(disk), "method": None, "error": str(exc)})
            continue
        planned.append(
            {
                "disk": label(disk),
                "method": step["method"],
                "category": step["category"],
                "description": step["description"],
            }
        )
    return planned


def label(disk: dict[str, Any]) -> str:
    parts = [disk.get("name") or "?", disk.get("model") or "", disk.get("serial") or ""]
    return " ".join(p for p in parts if p).strip()


def check_result(step_params: dict[str, Any], result: dict[str, Any]) -> str | None:
    """Why the agent's result does not prove the planned wipe (None: it does)."""
    if not isinstance(result, dict):
        return "no result"
    if result.get("method") != step_params["method"]:
        return f"the agent ran {result.get('method')!r}, not the planned {step_params['method']!r}"
    verification = result.get("verification")
    if not isinstance(verification, dict):
        return "no verification"
    if verification.get("passed") is not True:
        return f"verification failed: {str(verification.get('detail', ''))[:500]}"
    size = step_params["disk"].get("size") or 0
    if verification.get("mode") == "full" and verification.get("bytes_read") != size:
        return f"verification read {verification.get('bytes_read')} bytes of a {size}-byte disk"
    if verification.get("mode") not in ("full", "sampled"):
        return f"unknown verification mode {verification.get('mode')!r}"
    if verification.get("expect") != step_params["expect"]:
        return f"verified for {verification.get('expect')!r}, expected {step_params['expect']!r}"
    return None
