"""Provisioning-only DHCP with dnsmasq (Rule E): its configuration and its host entries.

PureBoot answers no DHCP itself. It writes, for one boot network:

- a dnsmasq configuration (``render_config``, written by ``manage.py
  dhcp_config``): full DHCP (range, router, DNS) or proxy DHCP beside an
  existing server; DNS off (``port=0``), dnsmasq's own TFTP off (boot files
  come from the PureBoot TFTP daemon and the controller's HTTP); the first
  stage each client type needs;
- a ``dhcp-hostsdir`` with one file per node, naming each of its MACs and
  whether dnsmasq answers it (``sync_host``, queued on every lifecycle
  transition; ``rebuild_hostsdir``, run by ``manage.py dhcp_sync``).

Who is answered:

| machine                                                   | DHCP               |
|-----------------------------------------------------------|--------------------|
| discovered, failed, pending, installing, reprovision,     | answered           |
| deprovisioning, migrating (they need the network to boot: |                    |
| the wait script, the installer, the agent)                |                    |
| installed, active, retired                                | ignored            |
| unknown MAC, discovery on                                 | answered only when |
|                                                           | it network-boots   |
| unknown MAC, discovery off                                | ignored            |

"Network-boots" means a PXE or HTTP Boot vendor class or iPXE's option 175:
an unknown laptop asking for an address is never answered, an unknown
machine that PXE-boots reaches ``/boot/ipxe`` and is registered as
discovered.

How dnsmasq 2.90 (Debian bookworm) behaves, measured with the real daemon by
tests/bootserve/test_dhcp.py:

- A file written in the hosts dir is read at once (inotify). The newest
  record for a MAC replaces the older one, whichever file held it; a deleted
  file or a removed line is not noticed until SIGHUP. So no entry is ever
  deleted: it becomes an ``ignore`` line, and MACs that left every node keep
  one in the file ``removed``.
- Files whose name starts with a dot are skipped: temporary files do.
- Proxy DHCP never looks at the ``ignore`` keyword (only ``dhcp-ignore``
  tags), so in proxy mode an ignored MAC also carries the tag
  ``pureboot-ignore``.
- dnsmasq aborts on SIGHUP once it has answered a host whose dynamic entry
  carries a ``set:`` tag. Full-mode entries carry none, so a reload is safe
  there; in proxy mode restart dnsmasq instead of reloading it (proxy DHCP
  keeps no leases, a restart loses nothing). PureBoot never signals it.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from nodes.choices import NodeState as S

MODES = ("full", "proxy")
# BIOS first stage: iPXE (undionly.kpxe, then /boot/ipxe) or PXELINUX, whose
# HTTP-capable lpxelinux.0 then reads pxelinux.cfg/01-<mac> from the daemon.
BIOS_LOADERS = {"ipxe": "undionly.kpxe", "pxelinux": "lpxelinux.0"}
# States whose machines need the network to boot: the wait script
# (discovered, failed), the installer and its own DHCP (pending, reprovision,
# installing), the agent (deprovisioning, migrating).
ANSWERED_STATES = frozenset(
    {
        S.DISCOVERED,
        S.FAILED,
        S.PENDING,
        S.INSTALLING,
        S.REPROVISION,
        S.DEPROVISIONING,
        S.MIGRATING,
    }
)
IGNORED_STATES = frozenset({S.INSTALLED, S.ACTIVE, S.RETIRED})
IGNORE_TAG = "pureboot-ignore"
REMOVED_FILE = "removed"  # MACs that belong to no node any more
LOCK_FILE = ".lock"  # dot: dnsmasq skips it
# Raspberry Pi OUIs; the Pi 4 bootloader sends the same vendor class as an x86
# BIOS PXE ROM (PXEClient:Arch:00000:UNDI:002001), so the MAC tells them apart.
DEFAULT_PI_OUIS = ("b8:27:eb", "dc:a6:32", "e4:5f:01", "28:cd:c1", "d8:3a:dd", "2c:cf:67")
BOOT_FILE_FIELD = 127  # BOOTP's file field; dnsmasq silently truncates longer names
DNSMASQ_PACKAGE = "dnsmasq-base"

_IFNAME = re.compile(r"^(?!\.\.?$)[A-Za-z0-9_.-]{1,15}$")
_LEASE = re.compile(r"^(infinite|[1-9][0-9]{0,8}[smhdw]?)$")
_BOOT_FILE = re.compile(r"^[A-Za-z0-9._+-][A-Za-z0-9._+/-]{0,100}$")
_OUI = re.compile(r"^[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$")
_URL_FORBIDDEN = re.compile(r"[\s,\"'#\\\x00-\x1f\x7f]")
_PATH = re.compile(r"^/[^\s,\"'#\\\x00-\x1f\x7f]*$")


class DhcpConfigError(ValueError):
    """A boot network setting dnsmasq would reject or misread; the message names it."""


class DnsmasqMissing(RuntimeError):
    """dnsmasq is not installed here, so a configuration cannot be checked."""


@dataclass(frozen=True)
class BootNetwork:
    """One boot network served by one dnsmasq (and one PureBoot TFTP daemon).

    ``mode`` "full": dnsmasq leases addresses from ``range_start``-``range_end``
    and hands out ``router`` and ``dns``. ``mode`` "proxy": another server
    leases addresses on ``proxy_subnet`` ("10.0.0.0/24" or "10.0.0.0") and
    dnsmasq adds only the boot information.
    """

    interface: str
    tftp_server: str  # IPv4 address of the PureBoot TFTP daemon (next-server)
    http_base: str  # the controller as machines reach it, e.g. http://10.99.0.1:8000
    mode: str = "proxy"
    range_start: str = ""
    range_end: str = ""
    netmask: str = ""
    router: str = ""
    dns: tuple[str, ...] = ()
    lease_time: str = "1h"
    proxy_subnet: str = ""
    discovery: bool = True
    ipv6_ra: bool = False
    log_dhcp: bool = False
    leasefile: str = ""
    # Full mode: what dnsmasq runs on each lease event (add, old, del), e.g. a
    # wrapper of `manage.py record_dhcp_event`, for the DHCP boot records.
    script: str = ""
    bios_loader: str = "ipxe"
    uefi_file: str = "snponly.efi"
    http_boot_file: str = "snponly.efi"
    # ARM64 UEFI (client architectures 11 and 19): GRUB, imported by
    # `manage.py import_bootloaders --arm64` (no arm64 iPXE is packaged).
    arm64_file: str = "grubnetaa64.efi"
    pi_ouis: tuple[str, ...] = field(default=DEFAULT_PI_OUIS)

    @classmethod
    def from_settings(cls, **overrides) -> BootNetwork:
        """The boot network described by the PUREBOOT_DHCP_* settings, then ``overrides``."""
        start, _, end = _setting("PUREBOOT_DHCP_RANGE", "").partition(",")
        values = {
            "interface": _setting("PUREBOOT_DHCP_INTERFACE", ""),
            "tftp_server": _setting("PUREBOOT_DHCP_TFTP_SERVER", ""),
            "http_base": _setting("PUREBOOT_DHCP_HTTP_BASE", "")
            or getattr(settings, "PUREBOOT_PUBLIC_URL", ""),
            "mode": configured_mode(),
            "range_start": start.strip(),
            "range_end": end.strip(),
            "netmask": _setting("PUREBOOT_DHCP_NETMASK", ""),
            "router": _setting("PUREBOOT_DHCP_ROUTER", ""),
            "dns": split_list(_setting("PUREBOOT_DHCP_DNS", "")),
            "lease_time": _setting("PUREBOOT_DHCP_LEASE_TIME", "1h"),
            "proxy_subnet": _setting("PUREBOOT_DHCP_PROXY_SUBNET", ""),
            "discovery": bool(getattr(settings, "PUREBOOT_DISCOVERY", True)),
            "ipv6_ra": bool(getattr(settings, "PUREBOOT_DHCP_IPV6_RA", False)),
            "leasefile": _setting("PUREBOOT_DHCP_LEASEFILE", ""),
            "script": _setting("PUREBOOT_DHCP_SCRIPT", ""),
            "bios_loader": _setting("PUREBOOT_DHCP_BIOS_LOADER", "ipxe"),
        }
        values.update(overrides)
        return cls(**values)

    @property
    def bios_file(self) -> str:
        return BIOS_LOADERS.get(self.bios_loader, "")

    @property
    def base(self) -> str:
        return self.http_base.rstrip("/")

    def ipxe_url(self) -> str:
        """What an iPXE client is told to fetch first.

        It carries what identifies an x86 machine (MAC, SMBIOS UUID) and its
        platform; the scripts PureBoot serves then re-ask with the full poll
        URL. Kept short: it must fit the 127-byte BOOTP file field.
        """
        return (
            f"{self.base}/boot/ipxe?mac=${{net0/mac}}&uuid=${{uuid}}"
            "&arch=${buildarch}&platform=${platform}"
        )

    def http_boot_url(self, file: str = "") -> str:
        # /boot/http answers a machine that should boot its disk with a fast 404.
        return f"{self.base}/boot/http/{file or self.http_boot_file}"

    def validate(self) -> None:
        """Raise DhcpConfigError naming every setting that is wrong."""
        problems: list[str] = []
        if not _IFNAME.match(self.interface or ""):
            problems.append(
                f"interface {self.interface!r}: a Linux interface name is 1-15 letters, "
                "digits, '.', '_' or '-' (no spaces)"
            )
        if self.mode not in MODES:
            problems.append(f"mode {self.mode!r}: use full or proxy")
        _ipv4(self.tftp_server, "TFTP server", problems, required=True)
        self._check_urls(problems)
        if self.mode == "full":
            self._check_full(problems)
        elif self.mode == "proxy":
            self._check_proxy(problems)
        if self.bios_loader not in BIOS_LOADERS:
            problems.append(f"BIOS loader {self.bios_loader!r}: use {' or '.join(BIOS_LOADERS)}")
        for name in ("uefi_file", "http_boot_file", "arm64_file"):
            value = getattr(self, name)
            if not _BOOT_FILE.match(value or "") or ".." in value.split("/"):
                problems.append(f"{name} {value!r}: a relative path in the boot root")
        for oui in self.pi_ouis:
            if not _OUI.match(oui):
                problems.append(f"Raspberry Pi OUI {oui!r}: three lower-case hex bytes, aa:bb:cc")
        if self.leasefile and not _abs_path(self.leasefile):
            problems.append(
                f"leasefile {self.leasefile!r}: an absolute path without spaces, commas or quotes"
            )
        if self.script and not _abs_path(self.script):
            problems.append(
                f"DHCP script {self.script!r}: an absolute path without spaces, commas or quotes"
            )
        elif self.script and self.mode == "proxy":
            problems.append(
                f"DHCP script {self.script!r}: proxy DHCP grants no leases, so dnsmasq would "
                "never run it (leave PUREBOOT_DHCP_SCRIPT empty in proxy mode)"
            )
        if problems:
            raise DhcpConfigError("; ".join(problems))

    def _check_urls(self, problems: list[str]) -> None:
        parts = urlsplit(self.http_base or "")
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.query
            or parts.fragment
            or _URL_FORBIDDEN.search(self.http_base)
        ):
            problems.append(
                f"HTTP base {self.http_base!r}: an http:// or https:// URL of the controller "
                "as machines reach it, e.g. http://10.99.0.1:8000 (no spaces, commas, quotes)"
            )
            return
        urls = (
            ("iPXE URL", self.ipxe_url()),
            ("HTTP Boot URL", self.http_boot_url()),
            ("ARM64 HTTP Boot URL", self.http_boot_url(self.arm64_file)),
        )
        for what, url in urls:
            if len(url) > BOOT_FILE_FIELD:
                problems.append(
                    f"the {what} {url} is {len(url)} characters; DHCP's boot file field holds "
                    f"{BOOT_FILE_FIELD}: use a shorter HTTP base (an IP address and port)"
                )

    def _check_full(self, problems: list[str]) -> None:
        start = _ipv4(self.range_start, "range start", problems, required=True)
        end = _ipv4(self.range_end, "range end", problems, required=True)
        if start and end and int(start) > int(end):
            problems.append(
                f"range {self.range_start},{self.range_end}: the start is after the end"
            )
        if self.netmask:
            try:
                net = ipaddress.IPv4Network(f"{start or '0.0.0.0'}/{self.netmask}", strict=False)
            except ValueError:
                problems.append(f"netmask {self.netmask!r}: a netmask such as 255.255.255.0")
            else:
                if start and end and end not in net:
                    problems.append(
                        f"range {self.range_start},{self.range_end} is not inside one "
                        f"/{net.prefixlen} network"
                    )
        _ipv4(self.router, "router", problems)
        for server in self.dns:
            _ipv4(server, "DNS server", problems, required=True)
        if not _LEASE.match(self.lease_time or ""):
            problems.append(
                f"lease time {self.lease_time!r}: seconds, or a number with s, m, h, d or w "
                "(e.g. 1h), or infinite"
            )

    def _check_proxy(self, problems: list[str]) -> None:
        raw = (self.proxy_subnet or "").strip()
        if not raw:
            problems.append(
                "proxy mode needs the subnet of the existing DHCP server, e.g. 10.0.0.0/24"
            )
            return
        try:
            ipaddress.IPv4Network(raw, strict=True)
        except ValueError as exc:
            problems.append(f"proxy subnet {raw!r}: {exc} (e.g. 10.0.0.0/24)")


def _setting(name: str, default: str) -> str:
    return str(getattr(settings, name, default) or default).strip()


def split_list(raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def _abs_path(value: str) -> bool:
    """An absolute path dnsmasq reads as written (no spaces, commas, quotes or '#')."""
    return bool(_PATH.match(value))


def _ipv4(
    value: str, what: str, problems: list[str], *, required: bool = False
) -> ipaddress.IPv4Address | None:
    if not value:
        if required:
            problems.append(f"{what}: required (an IPv4 address)")
        return None
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        problems.append(f"{what} {value!r}: an IPv4 address such as 10.0.0.1")
        return None


# --- the configuration -------------------------------------------------------


def render_config(net: BootNetwork, hostsdir: str | Path) -> str:
    """The dnsmasq configuration for ``net``; raises DhcpConfigError for bad settings."""
    net.validate()
    hostsdir = str(hostsdir)
    if not _abs_path(hostsdir):
        raise DhcpConfigError(
            f"hosts dir {hostsdir!r}: an absolute path without spaces, commas or quotes"
        )
    tftp = net.tftp_server
    pxelinux = net.bios_loader == "pxelinux"
    lines = [
        f"# PureBoot: provisioning-only DHCP on {net.interface} ({net.mode} DHCP).",
        "# Written by `manage.py dhcp_config`: regenerate it rather than editing it.",
        "# DNS is off (port=0) and dnsmasq's own TFTP stays off: boot files come",
        f"# from the PureBoot TFTP daemon at {tftp} and from {net.base}.",
        f"# Host entries in {hostsdir} follow each node's lifecycle.",
    ]
    if net.mode == "proxy":
        lines.append("# Proxy mode: restart this dnsmasq, never reload it (SIGHUP), see")
        lines.append("# bootserve/dhcp.py.")
    lines += ["", f"interface={net.interface}", "bind-interfaces", "port=0"]
    if net.log_dhcp:
        lines.append("log-dhcp")
    if net.leasefile:
        lines.append(f"dhcp-leasefile={net.leasefile}")
    if net.script:
        lines.append("# Each lease granted, renewed or ended becomes a DHCP boot record.")
        lines.append(f"dhcp-script={net.script}")
    lines += ["", "# Addresses"]
    if net.mode == "full":
        mask = f",{net.netmask}" if net.netmask else ""
        lines.append(f"dhcp-range={net.range_start},{net.range_end}{mask},{net.lease_time}")
        if net.router:
            lines.append(f"dhcp-option=option:router,{net.router}")
        if net.dns:
            lines.append(f"dhcp-option=option:dns-server,{','.join(net.dns)}")
    else:
        raw = net.proxy_subnet.strip()
        subnet = ipaddress.IPv4Network(raw)
        # A bare address: dnsmasq takes the netmask from the interface.
        mask = f",{subnet.netmask}" if "/" in raw else ""
        lines.append(f"dhcp-range={subnet.network_address},proxy{mask}")
        # HTTP Boot clients are answered by the proxy too (UEFI allows proxy offers).
        lines.append("dhcp-pxe-vendor=PXEClient,HTTPClient")
    if net.ipv6_ra:
        # Without router advertisements iPXE waits ~15 s for IPv6 at each step.
        lines += ["enable-ra", f"dhcp-range=::,constructor:{net.interface},ra-only"]
    lines += [
        "",
        "# Who is answered (Rule E): host entries say which known MACs are ignored.",
        f"dhcp-hostsdir={hostsdir}",
        "dhcp-vendorclass=set:netboot,PXEClient",
        "dhcp-vendorclass=set:netboot,HTTPClient",
        "dhcp-match=set:netboot,175",
        f"dhcp-ignore=tag:{IGNORE_TAG}",
    ]
    if net.discovery:
        lines.append("# Discovery on: unknown machines are answered when they network-boot.")
        lines.append("dhcp-ignore=tag:!known,tag:!netboot")
    else:
        lines.append("# Discovery off: only machines PureBoot knows are answered.")
        lines.append("dhcp-ignore=tag:!known")
    lines += [
        "",
        "# First stage by client type. The tags exclude one another, so the order",
        "# of the dhcp-boot lines does not matter.",
        "dhcp-match=set:ipxe,175",
        "dhcp-match=set:bios,option:client-arch,0",
        "dhcp-match=set:efi64,option:client-arch,7",
        "dhcp-match=set:efi64,option:client-arch,9",
        "dhcp-match=set:efihttp,option:client-arch,16",
        "dhcp-vendorclass=set:efihttp,HTTPClient:Arch:00016",
        "# ARM64 UEFI: PXE (11) and HTTP Boot (19) get GRUB; 32-bit ARM (10, 18) gets nothing.",
        "dhcp-match=set:efiarm64,option:client-arch,11",
        "dhcp-match=set:efiarm64http,option:client-arch,19",
        "dhcp-vendorclass=set:efiarm64http,HTTPClient:Arch:00019",
    ]
    lines += [f"dhcp-mac=set:rpi,{oui}:*:*:*" for oui in net.pi_ouis]
    lines += [
        # With PXELINUX for BIOS, a BIOS iPXE ROM (option 175) gets it too.
        f"dhcp-boot=tag:ipxe,{'tag:!bios,' if pxelinux else ''}{net.ipxe_url()}",
        f"dhcp-boot=tag:!ipxe,tag:efihttp,{net.http_boot_url()}",
        "dhcp-option-force=tag:efihttp,60,HTTPClient",
        f"dhcp-boot=tag:!ipxe,tag:!efihttp,tag:efi64,{net.uefi_file},,{tftp}",
        f"dhcp-boot=tag:!ipxe,tag:efiarm64http,{net.http_boot_url(net.arm64_file)}",
        "dhcp-option-force=tag:efiarm64http,60,HTTPClient",
        f"dhcp-boot=tag:!ipxe,tag:!efiarm64http,tag:efiarm64,{net.arm64_file},,{tftp}",
        f"dhcp-boot={'' if pxelinux else 'tag:!ipxe,'}tag:bios,tag:!rpi,{net.bios_file},,{tftp}",
        "# Raspberry Pi: its bootloader needs option 43 to say 'Raspberry Pi Boot';",
        "# it then fetches <serial>/... from the TFTP server (next-server).",
        f"dhcp-boot=tag:!ipxe,tag:bios,tag:rpi,bootcode.bin,,{tftp}",
        'pxe-service=tag:rpi,0,"Raspberry Pi Boot"',
    ]
    return "\n".join(lines) + "\n"


def dnsmasq_binary() -> str:
    """The dnsmasq executable; raises DnsmasqMissing naming the Debian package."""
    found = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
    if not found:
        raise DnsmasqMissing(
            f"dnsmasq is not installed: apt-get install {DNSMASQ_PACKAGE} "
            "(it provides /usr/sbin/dnsmasq)"
        )
    return found


def check_config(text: str) -> None:
    """Have dnsmasq itself parse ``text`` (``dnsmasq --test``).

    Raises DnsmasqMissing, or DhcpConfigError with dnsmasq's own message.
    """
    binary = dnsmasq_binary()
    with tempfile.NamedTemporaryFile("w", prefix="pureboot-dnsmasq-", suffix=".conf") as fh:
        fh.write(text)
        fh.flush()
        result = subprocess.run(
            [binary, "--test", f"--conf-file={fh.name}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip()
        raise DhcpConfigError(f"dnsmasq rejected the configuration: {message}")


# The hosts directory lives in bootserve.dhcp_hosts; its names stay reachable here.
from .dhcp_hosts import (  # noqa: E402, F401
    answered,
    configured_hostsdir,
    configured_mode,
    host_entry,
    host_line,
    rebuild_hostsdir,
    sync_host,
)
