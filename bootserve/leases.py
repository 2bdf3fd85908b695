"""Which MAC holds an address, from dnsmasq's lease file (PUREBOOT_DHCP_LEASEFILE).

UEFI HTTP Boot (OVMF and most vendors' firmware) fetches its first stage from
a plain URL: no MAC in it, no iPXE variables. The one thing that identifies
the request is its source address, which dnsmasq leased a moment before.

dnsmasq writes one lease per line::

    <expiry> <mac> <ip> <hostname or *> <client-id or *>

``expiry`` is seconds since the epoch, 0 for an infinite lease. After a
``duid`` line come IPv6 leases, whose second field is an IAID, not a MAC; a
non-Ethernet MAC carries a ``<hwtype>-`` prefix. Those lines, and anything
else that does not parse, are skipped: a lease file PureBoot cannot read only
means the machine is not recognised.

The file is parsed once per change (inode, size, modification time), not per
request; a lookup is one ``stat()`` and a dictionary access. A file changed
in the last seconds is not cached, because a second rewrite within the
file system's timestamp granularity could keep the same key ("racy" entries,
as git calls them); dnsmasq rewrites it only when a lease changes.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from nodes.identifiers import normalize_mac

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_BYTES = 16 * 1024 * 1024  # ~150,000 leases; a bigger file is read that far
RACY_SECONDS = 2
_EXPIRY = re.compile(r"^[0-9]{1,12}$")


@dataclass(frozen=True)
class _Parsed:
    key: tuple[int, int, int]
    leases: dict[IPAddress, tuple[int, str]]


_cache: dict[str, _Parsed] = {}


def parse(text: str) -> dict[IPAddress, tuple[int, str]]:
    """Address -> (expiry, MAC) for every IPv4 lease line of a dnsmasq lease file.

    When an address appears twice, the first line wins: dnsmasq rewrites the
    file in place and truncates it last, so a reader can briefly see the new
    leases followed by the tail of the old ones.
    """
    leases: dict[IPAddress, tuple[int, str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or not _EXPIRY.match(fields[0]):
            continue
        try:
            mac = normalize_mac(fields[1])
            address = ipaddress.ip_address(fields[2])
        except ValueError:
            continue
        leases.setdefault(address, (int(fields[0]), mac))
    return leases


def mac_for(address: str, leasefile: str | Path | None = None) -> str | None:
    """The MAC that holds ``address`` by an unexpired lease, or None.

    None also when no lease file is configured, it is missing or unreadable,
    or ``address`` is not an address. ``leasefile`` defaults to
    PUREBOOT_DHCP_LEASEFILE.
    """
    path = settings.PUREBOOT_DHCP_LEASEFILE if leasefile is None else leasefile
    if not path:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # a dual-stack listener reports ::ffff:10.0.0.5
    entry = _leases(Path(path)).get(ip)
    if entry is None:
        return None
    expiry, mac = entry
    if expiry and expiry <= time.time():
        return None
    return mac


def _key(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _leases(path: Path) -> dict[IPAddress, tuple[int, str]]:
    try:
        before = path.stat()
    except OSError:
        return {}
    cached = _cache.get(str(path))
    if cached is not None and cached.key == _key(before):
        return cached.leases
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES)
        after = path.stat()
    except OSError:
        return {}
    leases = parse(data.decode("utf-8", "replace"))
    settled = time.time() - after.st_mtime > RACY_SECONDS
    if _key(after) == _key(before) and settled:
        _cache[str(path)] = _Parsed(_key(after), leases)
    return leases


def ipv4_addresses_for(macs, leasefile: str | Path | None = None) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses leased to any of ``macs`` by an unexpired lease, sorted.

    For the NFS exports of diskless nodes (``bootserve.ganesha``): a node's
    writable overlay is exported to the addresses it holds. Empty when no
    lease file is configured or none of the MACs holds a lease.
    """
    path = settings.PUREBOOT_DHCP_LEASEFILE if leasefile is None else leasefile
    wanted = set(macs)
    if not path or not wanted:
        return []
    now = time.time()
    return sorted(
        ip
        for ip, (expiry, mac) in _leases(Path(path)).items()
        if mac in wanted and isinstance(ip, ipaddress.IPv4Address) and (not expiry or expiry > now)
    )
