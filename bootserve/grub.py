"""GRUB configs for each boot decision, and the config file names GRUB asks for.

``grubnetx64.efi`` (imported by ``manage.py import_bootloaders``) has its prefix
at ``/grub`` on the TFTP server; ``grubnetaa64.efi`` (``--arm64``) at
``/grub-arm64``, so a config asked for there records the machine as aarch64.
Built by ``grub-mknetdir``, it asks for ``grub/grub.cfg-01-<mac-with-dashes>``,
then the client's IPv4 address in hex (``grub/grub.cfg-C0A80A05`` ...
``grub/grub.cfg-C``), then ``grub/grub.cfg``.
Debian's signed ``grubnetx64.efi.signed`` reads ``grub/grub.cfg`` only, so the
file PureBoot answers there (:func:`render_default`) asks again by MAC as
``grub/grub.cfg-<mac-with-colons>`` (GRUB's ``${net_default_mac}``). The TFTP
daemon maps both per-machine names back with :func:`parse_config_name`.

Kernel and initrd come over HTTP with GRUB's ``(http,<host[:port]>)/<path>``
device syntax (Debian's GRUB 2.06 reads a port after the host). Every config
ends in the local disk when something fails (Rule D): the install entry falls
back to the local entry when the kernel cannot be fetched. Local boot on UEFI
chainloads the disk's own loader (``EFI_LOCAL``; GRUB 2.06's ``exit`` would
land in the firmware's setup screen), ending in ``exit`` when no disk has one;
on BIOS it is ``chainloader (hd0)+1`` then ``boot``.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from nodes.identifiers import normalize_mac

from .engine import BOOT_WORDS, Decision, Kind
from .install import WIMBOOT_ONLY, InstallBoot

PREFIX = "grub"
#: ``grubnetaa64.efi``'s prefix: a config asked for under it comes from an ARM64 machine.
ARM64_PREFIX = "grub-arm64"
#: The architecture each prefix's GRUB runs on (the x86 one may also be a BIOS
#: GRUB an operator placed there, so it records nothing).
PREFIX_ARCH: dict[str, str | None] = {PREFIX: None, ARM64_PREFIX: "aarch64"}
#: Seconds the menus wait before their default entry.
WAIT_TIMEOUT = 5
INSTALL_TIMEOUT = 2

_DASH_NAME = re.compile(r"grub\.cfg-01-((?:[0-9a-f]{2}-){5}[0-9a-f]{2})", re.IGNORECASE)
_COLON_NAME = re.compile(r"grub\.cfg-((?:[0-9a-f]{2}:){5}[0-9a-f]{2})", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# Characters GRUB's lexer treats specially outside quotes (see its yylex.l),
# plus '#', which starts a comment at the start of a word.
_SPECIAL = set("{}|&$;<> \t'\"\\#")
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_./:,()=+%@\-\[\]]+")


def config_names(mac: str, prefix: str = PREFIX) -> list[str]:
    """The config file names GRUB asks for, in its order (IPv4 hex names left out).

    The last one is asked by PureBoot's own ``grub/grub.cfg`` (see the module
    docstring), so a machine booted by the signed GRUB is recognised too.
    """
    mac = normalize_mac(mac)
    return [
        f"{prefix}/grub.cfg-01-{mac.replace(':', '-')}",
        f"{prefix}/grub.cfg",
        f"{prefix}/grub.cfg-{mac}",
    ]


def config_arch(path: str) -> str | None:
    """The architecture the GRUB asking for ``path`` runs on, from its prefix; None if unknown."""
    return PREFIX_ARCH.get(path.lstrip("/").partition("/")[0])


def parse_config_name(path: str) -> tuple[str, str | None] | None:
    """Map a requested file name back to ``("mac", mac)``, ``("default", None)`` or None.

    One leading ``/`` is tolerated (GRUB sends its prefix, ``/grub``, as is);
    hex digits may be in either case. IPv4 hex names, other hardware types than
    Ethernet's ``01``, multicast MACs and anything else give None.
    """
    if path.startswith("/"):
        path = path[1:]
    directory, slash, name = path.partition("/")
    if directory not in PREFIX_ARCH or not slash or "/" in name:
        return None
    if name == "grub.cfg":
        return ("default", None)
    match = _DASH_NAME.fullmatch(name) or _COLON_NAME.fullmatch(name)
    if match is None:
        return None
    try:
        return ("mac", normalize_mac(match.group(1)))
    except ValueError:  # multicast or all-zero
        return None


def quote(text: str) -> str:
    """``text`` as one GRUB word: plain if it can be, else single-quoted."""
    text = _CONTROL.sub(" ", text)
    if _PLAIN_WORD.fullmatch(text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def _escape(arg: str) -> str:
    """One kernel argument as a GRUB word, specials backslash-escaped (``;`` -> ``\\;``)."""
    return "".join(f"\\{c}" if c in _SPECIAL else c for c in arg)


def _kernel_args(cmdline: str) -> list[str]:
    """Split a kernel command line the way the kernel does: blanks separate, ``"`` groups.

    The quotes themselves are dropped: GRUB's ``linux`` puts double quotes back
    around any argument that contains a blank, which the kernel reads the same.
    """
    args, current, quoted, started = [], [], False, False
    for char in _CONTROL.sub(" ", cmdline):
        if char == '"':
            quoted, started = not quoted, True
        elif char == " " and not quoted:
            if started:
                args.append("".join(current))
            current, started = [], False
        else:
            current.append(char)
            started = True
    if started:
        args.append("".join(current))
    return args


def cmdline(text: str) -> str:
    """A kernel command line as GRUB ``linux`` arguments, e.g. ``ds=nocloud-net\\;s=...``."""
    return " ".join(_escape(arg) for arg in _kernel_args(text) if arg)


def device_path(url: str) -> str:
    """``http://10.0.0.1:8000/boot/x`` as ``(http,10.0.0.1:8000)/boot/x``.

    Raises ValueError for a URL GRUB cannot fetch (https, user info, no host).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "tftp"):
        raise ValueError(f"GRUB cannot fetch {url!r}: only http:// and tftp:// URLs")
    if parts.username or parts.password or not parts.hostname:
        raise ValueError(f"GRUB cannot fetch {url!r}: it needs a plain host")
    host = parts.hostname
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return f"({parts.scheme},{host}){path}"


# The disk's own UEFI loaders, in the order tried: the removable-media path
# every installer may write, then the distributions' shim and GRUB, then Windows.
# ``${pb_efi}`` is x64 or aa64 (``${grub_cpu}``); FAT matches names in any case.
EFI_LOADERS = (
    "/EFI/BOOT/BOOT${pb_efi}.EFI",
    "/EFI/debian/shim${pb_efi}.efi",
    "/EFI/debian/grub${pb_efi}.efi",
    "/EFI/ubuntu/shim${pb_efi}.efi",
    "/EFI/fedora/shim${pb_efi}.efi",
    "/EFI/rocky/shim${pb_efi}.efi",
    "/EFI/almalinux/shim${pb_efi}.efi",
    "/EFI/Microsoft/Boot/bootmgfw.efi",
)
# GRUB 2.06's ``exit`` takes no status and returns success, which sends UEFI
# firmware to its setup screen (seen on AAVMF in the ARM64 lab), not to the
# next boot entry: so UEFI chainloads the disk's loader, and exits only when
# no disk has one.
EFI_LOCAL = (
    # search probes only the file systems loaded: a network GRUB loads none yet.
    "insmod part_gpt\n"
    "insmod part_msdos\n"
    "insmod fat\n"
    'if [ "${grub_cpu}" = "arm64" ]; then\n'
    "  set pb_efi=AA64\n"
    "else\n"
    "  set pb_efi=X64\n"
    "fi\n"
    f"for pb_loader in {' '.join(EFI_LOADERS)}; do\n"
    '  if search --no-floppy --file --set=pb_esp "${pb_loader}"; then\n'
    '    chainloader "(${pb_esp})${pb_loader}"\n'
    "    boot\n"
    "  fi\n"
    "done\n"
    "exit\n"
)


def local_boot(firmware: str) -> str:
    """Rule B: hand over to the local disk. UEFI: chainload its loader; BIOS: its MBR.

    The BIOS form checks the platform first, so an EFI GRUB handed a BIOS
    decision (firmware unknown to the caller) still boots the disk the UEFI way.
    """
    if firmware == "uefi":
        return EFI_LOCAL
    return (
        'if [ "${grub_platform}" = "efi" ]; then\n'
        + _indent(EFI_LOCAL)
        + "fi\nchainloader (hd0)+1\nboot\n"
    )


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


def _local_now(firmware: str, message: str) -> str:
    return f"echo {quote(message)}\n{local_boot(firmware)}"


def _menu(default: int, timeout: int, message: str, fallback: int | None = None) -> str:
    # Entries by number, not --id: every GRUB 2 reads numbers in default/fallback.
    lines = [f"set default={default}", f"set timeout={timeout}", "set timeout_style=menu"]
    if fallback is not None:
        lines.append(f"set fallback={fallback}")
    return "\n".join(lines) + f"\necho {quote(message)}\n"


def _local_entry(firmware: str, title: str = "Boot the local disk") -> str:
    return f"menuentry {quote(title)} --id local {{\n{_indent(local_boot(firmware))}}}\n"


def render_default() -> str:
    """``grub/grub.cfg``: ask again by MAC, else boot the local disk.

    GRUB reaches this file when no per-machine name was answered, and the
    signed ``grubnetx64.efi`` reads only this file. If the per-machine file
    cannot be read either, ``configfile`` fails and the script goes on to the
    local disk; the platform is checked at run time since nothing identifies
    the machine here.
    """
    return (
        'if [ -n "${net_default_mac}" ]; then\n'
        f'  configfile "${{prefix}}/grub.cfg-${{net_default_mac}}"\n'
        "fi\n"
        "echo 'PureBoot: no boot answer for this machine; booting the local disk'\n"
        f"{local_boot('bios')}"
    )


def render(
    decision: Decision,
    *,
    node_name: str,
    state: str,
    install: InstallBoot | None = None,
) -> str | None:
    """The GRUB config for ``decision``; None for IGNORE (the caller sends a TFTP error)."""
    fw = decision.firmware
    if decision.kind == Kind.IGNORE:
        return None
    if decision.kind == Kind.LOCAL:
        message = f"PureBoot: {node_name} is {state}; booting the local disk"
        if state not in ("installed", "active"):
            message += f" ({decision.reason})"  # any other state needs a why
        return _local_now(fw, message)
    if decision.kind == Kind.AGENT and install is None:
        return _local_now(fw, f"PureBoot: {node_name}: {decision.reason}")
    if install is not None and install.wimboot_files:
        return _local_now(fw, f"PureBoot: {node_name} is {state}; {WIMBOOT_ONLY}")
    if decision.kind in (Kind.INSTALL, Kind.AGENT) and install is not None:
        doing, entry = BOOT_WORDS[decision.kind]
        try:
            kernel, initrd = device_path(install.kernel), device_path(install.initrd)
        except ValueError as exc:
            return _local_now(fw, f"PureBoot: cannot install {node_name}: {exc}")
        args = cmdline(install.cmdline)
        return (
            _menu(0, INSTALL_TIMEOUT, f"PureBoot: {doing} {node_name}", fallback=1)
            + f"menuentry {quote(f'{entry} {node_name}')} --id install {{\n"
            f"  linux {quote(kernel)}{f' {args}' if args else ''}\n"
            f"  initrd {quote(initrd)}\n"
            "}\n" + _local_entry(fw)
        )
    # The menu clears the screen, so the entry's title is what the operator reads.
    return _menu(
        0,
        WAIT_TIMEOUT,
        f"PureBoot: {node_name} is {state}; waiting for an assignment "
        "(it takes effect at the next network boot)",
    ) + _local_entry(fw, f"PureBoot: {node_name} is {state}; boot the local disk")
