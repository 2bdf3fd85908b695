"""Reading dnsmasq's lease file: who holds an address (for UEFI HTTP Boot)."""

from __future__ import annotations

import ipaddress
import os
import time

import pytest

from bootserve import leases

FUTURE = int(time.time()) + 3600
# The shape dnsmasq 2.90 writes, IPv6 part included (see the lab test in test_dhcp.py).
LEASES = f"""\
{FUTURE} 52:54:00:aa:00:01 10.99.0.101 web01 01:52:54:00:aa:00:01
0 52:54:00:aa:00:02 10.99.0.102 * *
{FUTURE - 7200} 52:54:00:aa:00:03 10.99.0.103 * *
{FUTURE} 20-80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:0b:0c 10.99.0.104 ib0 *
duid 00:01:00:01:2c:5e:1a:2b:52:54:00:00:00:01
{FUTURE} 1234567 fd00::105 web05 00:01:00:01:2c:5e:1a:2b:52:54:00:aa:00:05
"""


@pytest.fixture
def leasefile(tmp_path, settings):
    path = tmp_path / "dnsmasq.leases"
    path.write_text(LEASES)
    settings.PUREBOOT_DHCP_LEASEFILE = str(path)
    return path


def test_addresses_map_to_macs(leasefile):
    assert leases.mac_for("10.99.0.101") == "52:54:00:aa:00:01"
    assert leases.mac_for("10.99.0.102") == "52:54:00:aa:00:02"  # expiry 0: infinite
    assert leases.mac_for("::ffff:10.99.0.101") == "52:54:00:aa:00:01"  # dual-stack listener


@pytest.mark.parametrize(
    "address",
    ["10.99.0.103", "10.99.0.104", "fd00::105", "10.99.0.250", "", "not-an-ip", "10.99.0.1%x"],
)
def test_expired_foreign_and_unknown_addresses_have_no_mac(leasefile, address):
    assert leases.mac_for(address) is None


def test_no_file_or_no_setting_means_unknown(tmp_path, settings):
    settings.PUREBOOT_DHCP_LEASEFILE = ""
    assert leases.mac_for("10.99.0.101") is None
    assert leases.mac_for("10.99.0.101", tmp_path / "missing") is None
    assert leases.mac_for("10.99.0.101", tmp_path) is None  # a directory


def test_garbage_lines_are_skipped(tmp_path):
    path = tmp_path / "leases"
    path.write_bytes(
        b"\x00\xff\xfe garbage\n"
        b"\n"
        b"12 52:54:00:aa:00:09\n"  # too short
        b"soon 52:54:00:aa:00:09 10.99.0.109 * *\n"
        b"-1 52:54:00:aa:00:09 10.99.0.109 * *\n"
        b"\xd9\xa3 52:54:00:aa:00:09 10.99.0.109 * *\n"  # a non-ASCII digit
        b"99999999999999 52:54:00:aa:00:09 10.99.0.109 * *\n"
        b"0 01:00:5e:00:00:01 10.99.0.110 * *\n"  # multicast, not an interface
        b"0 52:54:00:aa:00:11 10.99.0.300 * *\n"
        + f"{FUTURE} 52:54:00:aa:00:12 10.99.0.112 * *".encode()  # no final newline
    )
    assert leases.mac_for("10.99.0.109", path) is None
    assert leases.mac_for("10.99.0.110", path) is None
    assert leases.mac_for("10.99.0.112", path) == "52:54:00:aa:00:12"


def test_the_first_line_for_an_address_wins():
    # A reader can catch dnsmasq between rewriting the file and truncating it.
    parsed = leases.parse("0 52:54:00:aa:00:01 10.0.0.5 * *\n0 52:54:00:aa:00:02 10.0.0.5 * *\n")
    assert parsed == {ipaddress.ip_address("10.0.0.5"): (0, "52:54:00:aa:00:01")}


def test_parsed_once_per_change(tmp_path, monkeypatch):
    path = tmp_path / "leases"
    lines = [
        f"0 52:54:00:{i >> 8:02x}:{i & 255:02x}:01 10.1.{i >> 8}.{i & 255} * *" for i in range(5000)
    ]
    path.write_text("\n".join(lines) + "\n")
    old = time.time() - 60
    os.utime(path, (old, old))
    calls = []
    real = leases.parse
    monkeypatch.setattr(leases, "parse", lambda text: calls.append(1) or real(text))
    assert leases.mac_for("10.1.19.135", path) == "52:54:00:13:87:01"
    assert leases.mac_for("10.1.0.7", path) == "52:54:00:00:07:01"
    assert len(calls) == 1
    # dnsmasq rewrites the file: the next lookup sees the new leases.
    path.write_text("0 52:54:00:ff:ff:01 10.1.0.7 * *\n")
    os.utime(path, (old + 1, old + 1))
    assert leases.mac_for("10.1.0.7", path) == "52:54:00:ff:ff:01"
    assert leases.mac_for("10.1.19.135", path) is None
    assert len(calls) == 2


def test_a_file_changed_just_now_is_not_cached(tmp_path, monkeypatch):
    path = tmp_path / "leases"
    path.write_text("0 52:54:00:aa:00:01 10.0.0.5 * *\n")
    calls = []
    real = leases.parse
    monkeypatch.setattr(leases, "parse", lambda text: calls.append(1) or real(text))
    assert leases.mac_for("10.0.0.5", path) == "52:54:00:aa:00:01"
    # Same inode, size and (coarse) timestamp, different owner: still seen.
    path.write_text("0 52:54:00:aa:00:02 10.0.0.5 * *\n")
    assert leases.mac_for("10.0.0.5", path) == "52:54:00:aa:00:02"
    assert len(calls) == 2
