"""PXELINUX configs for each boot decision, and the config file names PXELINUX asks for.

PXELINUX reads its config over TFTP, trying in order ``pxelinux.cfg/<uuid>``,
``pxelinux.cfg/01-<mac-with-dashes>``, the client's IPv4 address in upper-case
hex with ever shorter prefixes (``C0A80A05`` ... ``C``), then
``pxelinux.cfg/default``. The TFTP daemon maps the first two back to a machine
with :func:`parse_config_name` and answers them with :func:`render`; PureBoot
never answers the IP names (addresses change; MACs and UUIDs identify).

The install boot fetches kernel and initrd by ``http://`` URL. Plain
``pxelinux.0`` speaks TFTP only; ``lpxelinux.0`` (the lwIP build, shipped in the
same Debian ``pxelinux`` package) also speaks HTTP and FTP. DHCP must therefore
hand out ``lpxelinux.0`` for the PXELINUX path; both need ``ldlinux.c32`` next
to them (Debian ``syslinux-common``). PXELINUX runs on BIOS only, so the local
boot here is always ``LOCALBOOT 0`` (return to the BIOS, which boots the next
device).

Every config ends in the local disk when something fails (Rule D): the install
label names ``ONERROR local``, so a kernel that cannot be fetched boots the disk
instead of leaving the machine at a prompt.
"""

from __future__ import annotations

import re

from nodes.identifiers import normalize_mac, normalize_uuid

from .engine import BOOT_WORDS, Decision, Kind
from .install import WIMBOOT_ONLY, InstallBoot

CONFIG_DIR = "pxelinux.cfg"
#: Tenths of a second the WAIT menu would show when a key opens the prompt.
WAIT_TIMEOUT = 50
INSTALL_TIMEOUT = 30
# SAY is a global directive: PXELINUX prints it while reading the file, not when
# a label runs, so messages sit at the top and labels carry none.
LOCAL_LABEL = "LABEL local\n  MENU LABEL Boot the local disk\n  LOCALBOOT 0\n"

_MAC_NAME = re.compile(r"01-((?:[0-9a-f]{2}-){5}[0-9a-f]{2})", re.IGNORECASE)
_UUID_NAME = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def config_names(mac: str, uuid: str | None = None) -> list[str]:
    """The config file names PXELINUX tries for this machine, in its order.

    ``mac`` and ``uuid`` are in any form :mod:`nodes.identifiers` accepts. The
    IPv4 hex names PXELINUX tries between the MAC and ``default`` are left out.
    The UUID name is written from the UUID as given: PXELINUX prints the bytes
    of DHCP option 97 in wire order, which some PXE ROMs fill with the SMBIOS
    byte order (first three fields swapped) rather than the canonical form.
    """
    names = []
    if uuid:
        names.append(f"{CONFIG_DIR}/{normalize_uuid(uuid)}")
    names.append(f"{CONFIG_DIR}/01-{normalize_mac(mac).replace(':', '-')}")
    names.append(f"{CONFIG_DIR}/default")
    return names


def parse_config_name(path: str) -> tuple[str, str | None] | None:
    """Map a requested file name back to the identity it names.

    Returns ``("mac", "aa:bb:cc:dd:ee:ff")``, ``("uuid", "<canonical uuid>")``,
    ``("default", None)``, or None for anything else (an IP hex name, another
    hardware type than Ethernet's ``01``, a multicast MAC, a placeholder UUID,
    any extra path component). One leading ``/`` is tolerated because some
    clients send one; hex digits may be in either case.
    """
    if path.startswith("/"):
        path = path[1:]
    directory, slash, name = path.partition("/")
    if directory != CONFIG_DIR or not slash or "/" in name:
        return None
    if name == "default":
        return ("default", None)
    try:
        if match := _MAC_NAME.fullmatch(name):
            return ("mac", normalize_mac(match.group(1)))
        if _UUID_NAME.fullmatch(name):
            return ("uuid", normalize_uuid(name))
    except ValueError:  # multicast MAC, placeholder UUID
        return None
    return None


def _line(text: str) -> str:
    """One config line's worth of ``text``: PXELINUX reads a config line by line."""
    return _CONTROL.sub(" ", text).strip()


def _local(node_name: str, state: str, message: str) -> str:
    says = f"PureBoot: {_line(node_name)} is {_line(state)}; {message}"
    return f"DEFAULT local\nPROMPT 0\nSAY {says}\n{LOCAL_LABEL}"


def render_default() -> str:
    """``pxelinux.cfg/default``: reached only when no per-machine name was answered.

    PXELINUX always asks for its MAC name first, so this answers a machine the
    controller chose not to identify; it boots the local disk rather than
    leaving PXELINUX to print "no config file" and reboot in a loop.
    """
    return (
        "DEFAULT local\n"
        "PROMPT 0\n"
        "SAY PureBoot: no boot answer for this machine; booting the local disk\n"
        f"{LOCAL_LABEL}"
    )


def render(
    decision: Decision,
    *,
    node_name: str,
    state: str,
    install: InstallBoot | None = None,
) -> str | None:
    """The PXELINUX config for ``decision``; None for IGNORE (the caller sends a TFTP error)."""
    if decision.kind == Kind.IGNORE:
        return None
    if decision.kind == Kind.LOCAL:
        return _local(node_name, state, "booting the local disk")
    if decision.kind == Kind.AGENT and install is None:
        return _local(node_name, state, decision.reason)
    if install is not None and install.wimboot_files:
        return _local(node_name, state, WIMBOOT_ONLY)
    if decision.kind in (Kind.INSTALL, Kind.AGENT) and install is not None:
        name = _line(node_name)
        doing, entry = BOOT_WORDS[decision.kind]
        return (
            "DEFAULT install\n"
            "PROMPT 0\n"
            f"TIMEOUT {INSTALL_TIMEOUT}\n"
            "ONERROR local\n"
            f"MENU TITLE PureBoot: {doing} {name}\n"
            f"SAY PureBoot: {doing} {name} (the local disk if the kernel cannot be fetched)\n"
            "LABEL install\n"
            f"  MENU LABEL {entry} {name}\n"
            f"  KERNEL {_line(install.kernel)}\n"
            f"  INITRD {_line(install.initrd)}\n"
            f"  APPEND {_line(install.cmdline)}\n"
            # BOOTIF=01-<mac> on the command line: the installer configures the
            # interface the machine booted from, not the first one it finds.
            "  IPAPPEND 2\n"
            f"{LOCAL_LABEL}"
        )
    name = _line(node_name)
    return (
        "DEFAULT local\n"
        "PROMPT 0\n"
        f"TIMEOUT {WAIT_TIMEOUT}\n"
        f"MENU TITLE PureBoot: {name} is {_line(state)}\n"
        f"SAY PureBoot: {name} is {_line(state)}; waiting for an assignment "
        "(it takes effect at the next network boot)\n"
        f"{LOCAL_LABEL}"
    )
