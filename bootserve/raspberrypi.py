"""Raspberry Pi network boot over TFTP (Pi 3, 4 and 5), answered from the decision engine.

Once DHCP has named the TFTP server (option 43 "Raspberry Pi Boot"), a Pi asks
for its files under a folder that names it (``bootserve.pi_names``): its
serial (8 lower-case hex digits, ``TFTP_PREFIX=0``, the default), its MAC
with dashes (``TFTP_PREFIX=2``), or no folder at all, when the requesting
address is looked up in dnsmasq's lease file (full DHCP mode; behind another
DHCP server such a Pi cannot be told apart and gets "not found"). A Pi 3 boot
ROM first fetches ``bootcode.bin`` from the root (a static file, the same for
all), then ``<serial>/start.elf``. A Pi 5 loads no ``start*.elf``: its first
file is ``config.txt``, whose ``kernel=`` it boots. A Pi 4 boot goes:

1. ``<serial>/start4.elf`` (``start.elf`` on older models), only to see whether
   the folder exists: the bootloader stops the transfer once it is answered.
   If neither is found it drops the prefix and tries ``start4.elf`` at the TFTP
   root; when that is missing too the network boot has failed and the
   bootloader goes on to the next mode of its ``BOOT_ORDER`` (SD card, USB).
2. ``<serial>/config.txt``, then the firmware it names: ``start4.elf`` and
   ``fixup4.dat``.
3. The firmware reads ``config.txt`` again and fetches the device tree
   (``bcm2711-rpi-4-b.dtb``), ``overlays/…``, ``cmdline.txt``, the kernel and
   the initramfs, then starts the kernel.

What each decision gets:

| decision                     | answer                                            |
|------------------------------|---------------------------------------------------|
| INSTALL                      | ``config.txt`` and ``cmdline.txt`` rendered here; |
|                              | the kernel and initramfs names in ``config.txt``  |
|                              | map to the pinned workflow's kernel and initrd in |
|                              | the boot root; firmware from ``<boot root>/rpi/`` |
| LOCAL, WAIT, AGENT, IGNORE   | "file not found", for every file                  |

"File not found" is the Pi's Rule B. Its bootloader cannot be told to boot
its SD card from a config file; only a missing ``start4.elf`` ends the network
boot for sure and sends it to its next boot mode. So installed and active
Pis, Pis failed at the attempt limit, discovered and failed Pis (an unknown Pi
is registered as discovered by its first request, then moves on like them),
Pis in deprovisioning or migrating (the agent has no Raspberry Pi boot yet), and retired Pis
all get not found, and boot whatever their ``BOOT_ORDER`` names next.

One boot, one boot request. A Pi fetches a dozen files per boot and some of
them several times (``config.txt`` by the bootloader and again by the
firmware; ``start4.elf`` to probe, then to load; a tsize probe then the real
transfer), so no single file marks a boot. The first request of a boot for
``start4.elf``, ``start.elf`` or ``config.txt`` (the bootloader's first files;
normally the ``start4.elf`` probe, which must already carry the decision, see
above) is the boot request: it goes through ``services.handle_boot`` like an
iPXE or PXELINUX fetch, so it registers an unknown Pi, starts or retries its
install, or fails it at the limit. Every request, the boot request included,
is then answered read-only from the node as it is now: ``engine.decide`` on
``services.facts``, and for an installing node the install under way. A boot
stays open (its later requests perform nothing) until the Pi has asked for its
initramfs (the last file it loads), until no request came for
``BOOT_IDLE_SECONDS``, or until the node's state is no longer the one its
boot request left (an operator changed it: the next first file is a new boot).
Open boots live in the memory of the TFTP daemon's parent, which decides every
request; after a restart in the middle of a boot, that boot's next first file
counts as a new boot.

Firmware files are only the names the bootloader and firmware load
(``start*.elf``, ``fixup*.dat``, ``bootcode.bin``, ``*.dtb``, ``overlays/…``),
from ``<boot root>/rpi/<serial>/`` when an operator placed one there, else
from ``<boot root>/rpi/`` (``manage.py import_bootloaders --pi-firmware``).
Nothing else under ``rpi/`` is served (no ``recovery.elf`` or ``pieeprom.upd``
that would rewrite a Pi's bootloader).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nodes.choices import Arch, Firmware
from nodes.identifiers import normalize_mac, normalize_pi_serial
from nodes.models import Node

from . import leases, pi_names
from .engine import Client, Decision, Kind, Step, decide
from .install import InstallBoot, node_install_boot
from .models import Protocol
from .services import facts, find_node, handle_boot, policy, running_install
from .tftp import static_file

log = logging.getLogger(__name__)

FIRMWARE_DIR = "rpi"
CONFIG = "config.txt"
CMDLINE = "cmdline.txt"
#: The first files a Pi bootloader asks for: one of them begins every boot
#: (``start.elf``: a Pi 3; ``start4.elf``: a Pi 4; ``config.txt``: a Pi 5).
FIRST_FILES = frozenset({"start4.elf", "start.elf", CONFIG})
#: Seconds without a request after which a Pi's boot is over.
BOOT_IDLE_SECONDS = 30.0
#: Serial console first, screen last (the kernel's /dev/console); the firmware
#: turns ``serial0`` into the Pi's primary UART, which ``enable_uart=1`` enables.
CONSOLES = "console=serial0,115200 console=tty1"

_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")
_FIRMWARE = pi_names.FIRMWARE
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class KernelFiles:
    """The names ``config.txt`` gives the install kernel and initramfs, per architecture."""

    kernel: str
    initramfs: str
    arm_64bit: int


# The Pi 4 firmware's own default names for a 64-bit and a 32-bit (LPAE) kernel.
KERNEL_FILES = {
    Arch.AARCH64: KernelFiles("kernel8.img", "initramfs8", 1),
    Arch.ARMHF: KernelFiles("kernel7l.img", "initramfs7l", 0),
}


def kernel_files(arch: str) -> KernelFiles:
    return KERNEL_FILES.get(arch, KERNEL_FILES[Arch.AARCH64])


@dataclass(frozen=True)
class PiPath:
    """A TFTP request of a Pi: who asks (serial, MAC, or neither yet) and the file.

    ``serial`` and ``mac`` are both None for a name at the TFTP root: the
    caller finds the Pi by its address (:func:`at_root`).
    """

    serial: str | None
    name: str
    mac: str | None = None

    @property
    def key(self) -> str:
        """Which Pi, for the boots under way."""
        return f"serial:{self.serial}" if self.serial else f"mac:{self.mac}"

    def client(self) -> Client:
        # No architecture: a Pi may run a 64- or a 32-bit workflow (its node records which).
        if self.serial:
            return Client(serial=self.serial, firmware=Firmware.PI)
        return Client(macs=(self.mac,) if self.mac else (), firmware=Firmware.PI)


def parse_path(path: str) -> PiPath | None:
    """``<serial>/<file>``, ``<mac-with-dashes>/<file>`` or a Pi's root name as a PiPath.

    The serial is 8 hex digits in either case (the Pi sends lower case);
    ``<file>`` may have folders (``overlays/x.dtbo``) but no empty, ``.`` or
    ``..`` part, backslash or control character. One leading ``/`` is tolerated.
    None for anything else.
    """
    if path.startswith("/"):
        path = path[1:]
    if pi_names.is_pi_root_name(path):
        return PiPath(None, path)
    directory, slash, name = path.partition("/")
    if not slash or not pi_names.is_pi_folder(directory):
        return None
    if any(part in ("", ".", "..") or _UNSAFE.search(part) for part in name.split("/")):
        return None
    if pi_names.MAC_DIR.fullmatch(directory):
        try:
            return PiPath(None, name, normalize_mac(directory))
        except ValueError:  # multicast or all-zero
            return None
    return PiPath(normalize_pi_serial(directory), name)


def at_root(request: PiPath, source: str) -> PiPath | None:
    """A root name's Pi, by the address dnsmasq leased to ``source``; None if unknown."""
    if request.serial or request.mac:
        return request
    mac = leases.mac_for(source)
    return PiPath(None, request.name, mac) if mac else None


@dataclass(frozen=True)
class PiAnswer:
    """What a Pi is served in this boot: a decision, and the install when it installs."""

    decision: Decision
    node_name: str
    state: str | None  # None: no node
    arch: str
    install: InstallBoot | None = None
    node_id: int | None = None
    base_url: str = ""

    @property
    def serves(self) -> bool:
        """Whether the Pi gets its files; otherwise every file is "not found"."""
        boot = self.install
        return (
            self.decision.kind == Kind.INSTALL
            and boot is not None
            and bool(boot.kernel_file)
            and bool(boot.initrd_file)
        )


def _line(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()


def render_config(answer: PiAnswer) -> str | None:
    """``config.txt`` for ``answer``; None when the Pi is not served (not found)."""
    if not answer.serves:
        return None
    files = kernel_files(answer.arch)
    return (
        f"# PureBoot: installing {_line(answer.node_name)} (for this network boot only)\n"
        f"arm_64bit={files.arm_64bit}\n"
        f"kernel={files.kernel}\n"
        f"initramfs {files.initramfs} followkernel\n"
        "enable_uart=1\n"
    )


def render_cmdline(answer: PiAnswer) -> str | None:
    """``cmdline.txt``: the boot's command line behind a serial console, on one line.

    Whatever the boot (an installer, the agent deploying an image, an NFS
    root), the booted system also finds the controller and its node there:
    ``pureboot.url`` and ``pureboot.node``; the token that lets it fetch its
    configuration and report is in the boot's own arguments (``pureboot.token``,
    or the per-node configuration URL of an installer).
    """
    if not answer.serves or answer.install is None:
        return None
    args = _line(answer.install.cmdline)
    words = args.split()
    extra = []
    if answer.base_url and not any(w.startswith("pureboot.url=") for w in words):
        extra.append(f"pureboot.url={answer.base_url}")
    if answer.node_id and not any(w.startswith("pureboot.node=") for w in words):
        extra.append(f"pureboot.node={answer.node_id}")
    return " ".join(a for a in (CONSOLES, args, *extra) if a) + "\n"


def current_answer(pi: PiPath, *, base_url: str) -> PiAnswer:
    """What the Pi ``pi`` names gets now, from the node as it is. Changes nothing."""
    client = pi.client()
    node = find_node(client)
    if node is None:
        return PiAnswer(decide(None, client, policy()), "unknown machine", None, Arch.AARCH64)
    decision = decide(facts(node), client, policy())
    install = running_install(node, base_url=base_url)
    if install is not None:
        # The boot request started or retried this install; the rest of the
        # boot is its files even when that attempt was the last one allowed.
        decision = Decision(
            Kind.INSTALL, Step.NONE, f"{node.state}: the install under way", decision.firmware
        )
    return PiAnswer(decision, str(node), node.state, node.arch, install, node.pk, base_url)


@dataclass
class _Boot:
    state: str | None  # the node's state after the boot request
    seen: float  # monotonic time of the boot's last request


class Boots:
    """The Pi boots under way, by ``PiPath.key`` (see the module docstring)."""

    def __init__(
        self, idle: float = BOOT_IDLE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.idle = idle
        self.clock = clock
        self._open: dict[str, _Boot] = {}

    def get(self, serial: str) -> _Boot | None:
        now = self.clock()
        self._open = {s: b for s, b in self._open.items() if now - b.seen <= self.idle}
        return self._open.get(serial)

    def start(self, serial: str, state: str | None) -> None:
        self._open[serial] = _Boot(state, self.clock())

    def touch(self, serial: str) -> None:
        if serial in self._open:
            self._open[serial].seen = self.clock()

    def end(self, serial: str) -> None:
        self._open.pop(serial, None)

    def clear(self) -> None:
        self._open.clear()


BOOTS = Boots()


def answer_request(request: PiPath, *, base_url: str, source: str = "") -> PiAnswer:
    """Answer one request of a Pi boot, performing the boot's step on its boot request."""
    key = request.key
    boot = BOOTS.get(key)
    first = request.name in FIRST_FILES
    if first and boot is None:
        return _boot_request(request, base_url, source)
    answer = current_answer(request, base_url=base_url)
    if boot is None:
        return answer
    if first and answer.state != boot.state:
        return _boot_request(request, base_url, source)
    BOOTS.touch(key)
    if request.name == kernel_files(answer.arch).initramfs:
        BOOTS.end(key)  # its last file: the Pi's next request is a new boot
    return answer


def _boot_request(request: PiPath, base_url: str, source: str = "") -> PiAnswer:
    handle_boot(
        request.client(),
        base_url=base_url,
        source=source,
        protocol=Protocol.TFTP,
        asked=f"{request.serial or request.mac or ''}/{request.name}".lstrip("/"),
        via="Raspberry Pi boot",
    )
    answer = current_answer(request, base_url=base_url)
    BOOTS.start(request.key, answer.state)
    if answer.decision.kind == Kind.INSTALL and answer.install and not answer.serves:
        log.warning(
            "tftp: Pi %s: its workflow's kernel or initrd is an http(s) URL; a Pi "
            "fetches over TFTP only, from the boot root",
            request.key,
        )
    return answer


def serve(
    request: PiPath, *, base_url: str, boot_root: Path, source: str = ""
) -> bytes | Path | None:
    """The bytes or boot-root file for one Pi request, or None for "not found"."""
    found_pi = at_root(request, source)
    if found_pi is None:
        # A name at the root from an address nobody leased: no Pi to answer for.
        return None
    request = found_pi
    answer = answer_request(request, base_url=base_url, source=source)
    if not answer.serves or answer.install is None:
        return None
    name = request.name
    text = None
    if name == CONFIG:
        text = render_config(answer)
    elif name == CMDLINE:
        text = render_cmdline(answer)
    if text is not None:
        return text.encode("ascii", "replace")
    files = kernel_files(answer.arch)
    if name == files.kernel:
        return static_file(boot_root, answer.install.kernel_file or "")
    if name == files.initramfs:
        return static_file(boot_root, answer.install.initrd_file or "")
    if _FIRMWARE.fullmatch(name):
        firmware = boot_root / FIRMWARE_DIR
        own = f"{request.serial}/{name}" if request.serial else None
        found = (static_file(firmware, own) if own else None) or static_file(firmware, name)
        if found is None and name in FIRST_FILES:
            log.warning(
                "tftp: no %s under %s: import it with manage.py import_bootloaders "
                "--pi-firmware DIR",
                name,
                firmware,
            )
        return found
    return None


def preview(node: Node, base_url: str, token: str) -> dict[str, str | None]:
    """``config.txt`` and ``cmdline.txt`` the Pi would get at its next boot. Changes nothing."""
    client = Client(serial=node.serial or None, firmware=Firmware.PI, arch=node.arch)
    decision = decide(facts(node), client, policy())
    install = None
    if decision.kind == Kind.INSTALL:
        install = node_install_boot(node, token=token, base_url=base_url)
    answer = PiAnswer(decision, str(node), node.state, node.arch, install, node.pk, base_url)
    return {"rpi-config.txt": render_config(answer), "rpi-cmdline.txt": render_cmdline(answer)}
