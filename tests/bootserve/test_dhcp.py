"""Provisioning-only DHCP (Rule E): dnsmasq configs checked by dnsmasq, host entries, commands.

The ``lab`` tests run the real dnsmasq in a private network namespace and
send it DHCP requests with busybox ``udhcpc``. They fail, naming the Debian
package, when a tool is missing: CI must install dnsmasq-base,
busybox-static and iproute2 and run as root.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import uuid
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from bootserve import dhcp, dhcp_hosts, leases
from bootserve.engine import Client, Kind, NodeFacts, Policy, decide
from bootserve.tasks import sync_dhcp_host
from nodes.choices import NodeState
from nodes.models import NetworkInterface, Node
from tests.factories import make_node
from tests.processes import stop

ANSWERED = ["discovered", "failed", "pending", "installing", "reprovision"]
ANSWERED += ["deprovisioning", "migrating"]
IGNORED = ["installed", "active", "retired"]


def network(**kw) -> dhcp.BootNetwork:
    values = {
        "interface": "br0",
        "tftp_server": "10.99.0.1",
        "http_base": "http://10.99.0.1:8000",
        "mode": "full",
        "range_start": "10.99.0.100",
        "range_end": "10.99.0.200",
        "netmask": "255.255.255.0",
        "router": "10.99.0.1",
        "dns": ("10.99.0.1",),
        "proxy_subnet": "10.99.0.0/24",
    }
    values.update(kw)
    return dhcp.BootNetwork(**values)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.fixture
def hostsdir(tmp_path, settings):
    path = tmp_path / "dhcp-hosts"
    settings.PUREBOOT_DHCP_HOSTSDIR = str(path)
    settings.PUREBOOT_DHCP_MODE = "full"
    return path


# --- the configuration, checked by dnsmasq itself ----------------------------


def test_full_mode_config_passes_dnsmasq_test():
    text = dhcp.render_config(network(ipv6_ra=True, log_dhcp=True), "/srv/pureboot/hosts")
    dhcp.check_config(text)  # dnsmasq --test; fails naming dnsmasq-base when missing
    config = lines(text)
    for expected in (
        "interface=br0",
        "bind-interfaces",
        "port=0",
        "dhcp-range=10.99.0.100,10.99.0.200,255.255.255.0,1h",
        "dhcp-option=option:router,10.99.0.1",
        "dhcp-option=option:dns-server,10.99.0.1",
        "dhcp-hostsdir=/srv/pureboot/hosts",
        "dhcp-ignore=tag:pureboot-ignore",
        "dhcp-ignore=tag:!known,tag:!netboot",
        "dhcp-match=set:ipxe,175",
        "dhcp-match=set:efi64,option:client-arch,7",
        "dhcp-match=set:efi64,option:client-arch,9",
        "dhcp-match=set:efihttp,option:client-arch,16",
        "dhcp-match=set:efiarm64,option:client-arch,11",
        "dhcp-match=set:efiarm64http,option:client-arch,19",
        "dhcp-option-force=tag:efihttp,60,HTTPClient",
        "dhcp-boot=tag:!ipxe,tag:bios,tag:!rpi,undionly.kpxe,,10.99.0.1",
        "dhcp-boot=tag:!ipxe,tag:!efihttp,tag:efi64,snponly.efi,,10.99.0.1",
        "dhcp-boot=tag:!ipxe,tag:efihttp,http://10.99.0.1:8000/boot/http/snponly.efi",
        'pxe-service=tag:rpi,0,"Raspberry Pi Boot"',
        "enable-ra",
        "dhcp-range=::,constructor:br0,ra-only",
        "log-dhcp",
    ):
        assert expected in config
    ipxe = next(c for c in config if c.startswith("dhcp-boot=tag:ipxe,"))
    assert ipxe.endswith(
        "/boot/ipxe?mac=${net0/mac}&uuid=${uuid}&arch=${buildarch}&platform=${platform}"
    )
    # dnsmasq's own TFTP stays off: the PureBoot daemon serves the files.
    assert not any(c.startswith(("enable-tftp", "tftp-root")) for c in config)


@pytest.mark.parametrize(
    "subnet,expected",
    [
        ("10.99.0.0/24", "dhcp-range=10.99.0.0,proxy,255.255.255.0"),
        ("10.99.0.0", "dhcp-range=10.99.0.0,proxy"),
    ],
)
def test_proxy_mode_config_passes_dnsmasq_test(subnet, expected):
    text = dhcp.render_config(network(mode="proxy", proxy_subnet=subnet), "/srv/hosts")
    dhcp.check_config(text)
    config = lines(text)
    assert expected in config
    assert "dhcp-pxe-vendor=PXEClient,HTTPClient" in config
    assert not any(
        c.startswith(("dhcp-option=option:router", "dhcp-option=option:dns")) for c in config
    )
    assert "dhcp-boot=tag:!ipxe,tag:bios,tag:!rpi,undionly.kpxe,,10.99.0.1" in config
    assert "restart this dnsmasq, never reload it" in text


def test_discovery_off_answers_known_machines_only():
    config = lines(dhcp.render_config(network(discovery=False), "/srv/hosts"))
    assert "dhcp-ignore=tag:!known" in config
    assert "dhcp-ignore=tag:!known,tag:!netboot" not in config


def test_from_settings_then_overrides(settings):
    settings.PUREBOOT_DHCP_INTERFACE = "br7"
    settings.PUREBOOT_DHCP_MODE = "full"
    settings.PUREBOOT_DHCP_RANGE = "10.7.0.10, 10.7.0.20"
    settings.PUREBOOT_DHCP_DNS = "10.7.0.1,10.7.0.2"
    settings.PUREBOOT_DHCP_TFTP_SERVER = "10.7.0.1"
    settings.PUREBOOT_DHCP_HTTP_BASE = ""
    settings.PUREBOOT_PUBLIC_URL = "http://10.7.0.1:8000/"
    settings.PUREBOOT_DISCOVERY = False
    settings.PUREBOOT_DHCP_LEASEFILE = "/var/lib/pureboot/dnsmasq.leases"
    net = dhcp.BootNetwork.from_settings(router="10.7.0.254")
    assert (net.interface, net.range_start, net.range_end) == ("br7", "10.7.0.10", "10.7.0.20")
    assert net.dns == ("10.7.0.1", "10.7.0.2") and net.router == "10.7.0.254"
    assert net.base == "http://10.7.0.1:8000" and net.discovery is False
    # The lease file /boot/http reads is the one dnsmasq is told to write.
    config = lines(dhcp.render_config(net, "/srv/hosts"))
    assert "dhcp-leasefile=/var/lib/pureboot/dnsmasq.leases" in config


def test_dnsmasq_rejects_what_it_cannot_parse():
    with pytest.raises(dhcp.DhcpConfigError, match="dnsmasq rejected the configuration"):
        dhcp.check_config("port=0\ndhcp-range=not-an-address\n")


def test_missing_dnsmasq_is_named_with_its_package(monkeypatch):
    monkeypatch.setattr(dhcp.shutil, "which", lambda *a, **k: None)
    with pytest.raises(dhcp.DnsmasqMissing, match="apt-get install dnsmasq-base"):
        dhcp.check_config("port=0\n")


@pytest.mark.parametrize(
    "change,message",
    [
        ({"interface": "br 0"}, "interface 'br 0'"),
        ({"interface": "a-very-long-ifname"}, "1-15 letters"),
        ({"interface": ""}, "interface ''"),
        ({"mode": "relay"}, "use full or proxy"),
        ({"range_start": "10.99.0.250"}, "the start is after the end"),
        ({"range_end": "10.99.0.999"}, "range end '10.99.0.999'"),
        ({"range_start": ""}, "range start: required"),
        ({"netmask": "255.0.255.0"}, "netmask '255.0.255.0'"),
        ({"netmask": "255.255.255.128"}, "not inside one /25 network"),
        ({"router": "gateway"}, "router 'gateway'"),
        ({"dns": ("8.8.8.8", "dns.example")}, "DNS server 'dns.example'"),
        ({"lease_time": "1 hour"}, "lease time '1 hour'"),
        ({"mode": "proxy", "proxy_subnet": ""}, "subnet of the existing DHCP server"),
        ({"mode": "proxy", "proxy_subnet": "10.99.0.7/24"}, "has host bits set"),
        ({"tftp_server": ""}, "TFTP server: required"),
        ({"tftp_server": "tftp.example"}, "TFTP server 'tftp.example'"),
        ({"http_base": "ftp://10.99.0.1"}, "HTTP base 'ftp://10.99.0.1'"),
        ({"http_base": "http://10.99.0.1:8000/a,b"}, "no spaces, commas"),
        ({"http_base": "http://10.99.0.1/?x=1"}, "HTTP base"),
        ({"http_base": "http://" + "a" * 60 + ".example:8000"}, "boot file field holds 127"),
        ({"bios_loader": "grub"}, "BIOS loader 'grub': use ipxe or pxelinux"),
        ({"pi_ouis": ("DC:A6:32",)}, "Raspberry Pi OUI 'DC:A6:32'"),
        ({"leasefile": "leases"}, "leasefile 'leases'"),
    ],
)
def test_bad_networks_are_refused_with_the_setting_named(change, message):
    with pytest.raises(dhcp.DhcpConfigError) as exc:
        dhcp.render_config(network(**change), "/srv/hosts")
    assert message in str(exc.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(dhcp.DhcpConfigError) as exc:
        network(interface="br 0", tftp_server="", lease_time="soon").validate()
    assert str(exc.value).count(";") == 2


@pytest.mark.parametrize("hostsdir", ["relative/hosts", "/srv/my hosts", "/srv/a,b"])
def test_hosts_dir_must_be_a_plain_absolute_path(hostsdir):
    with pytest.raises(dhcp.DhcpConfigError, match="hosts dir"):
        dhcp.render_config(network(), hostsdir)


# --- host entries per state --------------------------------------------------


def test_the_two_state_sets_cover_the_lifecycle_exactly():
    assert dhcp.ANSWERED_STATES | dhcp.IGNORED_STATES == set(NodeState.values)
    assert not dhcp.ANSWERED_STATES & dhcp.IGNORED_STATES
    assert sorted(ANSWERED + IGNORED) == sorted(NodeState.values)


@pytest.mark.parametrize("state", NodeState.values)
def test_dhcp_agrees_with_the_decision_engine(state):
    """Ignored exactly where the engine answers local disk or nothing (Rules B and E)."""
    facts = NodeFacts(1, "n1", state, "x86_64", "uefi", 0, True)
    kind = decide(facts, Client(macs=("52:54:00:00:00:01",)), Policy()).kind
    assert dhcp.answered(state) == (kind not in (Kind.LOCAL, Kind.IGNORE))


@pytest.mark.django_db
@pytest.mark.parametrize("state", NodeState.values)
@pytest.mark.parametrize("mode", dhcp.MODES)
def test_host_entry_per_state(state, mode):
    node = make_node(state, macs=["52:54:00:aa:00:02", "52:54:00:aa:00:01"])
    entry = dhcp.host_entry(node, mode)
    if state in ANSWERED:
        assert entry == "52:54:00:aa:00:01\n52:54:00:aa:00:02\n"
    elif mode == "full":
        assert entry == "52:54:00:aa:00:01,ignore\n52:54:00:aa:00:02,ignore\n"
    else:  # proxy DHCP honours only dhcp-ignore tags
        assert entry == (
            "52:54:00:aa:00:01,set:pureboot-ignore,ignore\n"
            "52:54:00:aa:00:02,set:pureboot-ignore,ignore\n"
        )


@pytest.mark.django_db
def test_a_node_without_interfaces_has_no_entry():
    assert dhcp.host_entry(Node.objects.create()) is None


# --- sync_host: atomic, never deleting ---------------------------------------


@pytest.mark.django_db
def test_sync_is_off_without_a_hosts_dir(settings, tmp_path):
    settings.PUREBOOT_DHCP_HOSTSDIR = ""
    node = make_node("pending")
    assert dhcp.sync_host(node.pk) is None
    assert sync_dhcp_host(node.pk) is None


@pytest.mark.django_db
def test_sync_writes_the_node_file_readable_by_dnsmasq(hostsdir):
    node = make_node("pending", macs=["52:54:00:aa:00:01"])
    path = dhcp.sync_host(node.pk)
    assert path == hostsdir / str(node.pk)
    assert path.read_text() == "52:54:00:aa:00:01\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(hostsdir.stat().st_mode) == 0o755
    # nothing but the entry and the dot-named lock (dnsmasq skips dot files)
    assert sorted(p.name for p in hostsdir.iterdir()) == [".lock", str(node.pk)]


@pytest.mark.django_db
def test_leaving_provisioning_writes_ignore_instead_of_deleting(hostsdir):
    node = make_node("installing", macs=["52:54:00:aa:00:01"])
    path = dhcp.sync_host(node.pk)
    inode = path.stat().st_ino
    Node.objects.filter(pk=node.pk).update(state="installed")
    dhcp.sync_host(node.pk)
    assert path.read_text() == "52:54:00:aa:00:01,ignore\n"
    assert path.stat().st_ino != inode  # replaced by rename, not rewritten in place


@pytest.mark.django_db
def test_a_failed_write_leaves_the_old_file_and_no_temporary(hostsdir, monkeypatch):
    node = make_node("pending", macs=["52:54:00:aa:00:01"])
    path = dhcp.sync_host(node.pk)
    Node.objects.filter(pk=node.pk).update(state="active")
    renamed = []

    def broken_replace(src, dst):
        renamed.append(Path(src).name)
        raise OSError("disk full")

    monkeypatch.setattr(dhcp_hosts.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        dhcp.sync_host(node.pk)
    assert renamed and renamed[0].startswith(".")  # dnsmasq never reads a temporary
    assert path.read_text() == "52:54:00:aa:00:01\n"
    assert sorted(p.name for p in hostsdir.iterdir()) == [".lock", str(node.pk)]


@pytest.mark.django_db
def test_a_mac_taken_off_a_node_is_ignored_from_then_on(hostsdir):
    node = make_node("pending", macs=["52:54:00:aa:00:01", "52:54:00:aa:00:02"])
    dhcp.sync_host(node.pk)
    NetworkInterface.objects.filter(mac="52:54:00:aa:00:02").delete()
    dhcp.sync_host(node.pk)
    assert (hostsdir / str(node.pk)).read_text() == "52:54:00:aa:00:01\n"
    assert (hostsdir / "removed").read_text() == "52:54:00:aa:00:02,ignore\n"
    # The MAC comes back: answered again, and no longer listed as removed.
    NetworkInterface.objects.create(node=node, mac="52:54:00:aa:00:02")
    dhcp.sync_host(node.pk)
    assert (hostsdir / str(node.pk)).read_text() == "52:54:00:aa:00:01\n52:54:00:aa:00:02\n"
    assert (hostsdir / "removed").read_text() == ""


@pytest.mark.django_db
def test_a_mac_moved_to_another_node_is_not_marked_removed(hostsdir):
    old = make_node("pending", macs=["52:54:00:aa:00:01", "52:54:00:aa:00:02"])
    dhcp.sync_host(old.pk)
    new = make_node("active", macs=["52:54:00:aa:00:09"])
    NetworkInterface.objects.filter(mac="52:54:00:aa:00:02").update(node=new)
    dhcp.sync_host(new.pk)
    dhcp.sync_host(old.pk)
    assert (hostsdir / str(new.pk)).read_text() == (
        "52:54:00:aa:00:02,ignore\n52:54:00:aa:00:09,ignore\n"
    )
    assert (hostsdir / str(old.pk)).read_text() == "52:54:00:aa:00:01\n"
    assert not (hostsdir / "removed").exists()


@pytest.mark.django_db
def test_a_deleted_node_leaves_ignore_lines_only(hostsdir):
    node = make_node("discovered", macs=["52:54:00:aa:00:01"])
    dhcp.sync_host(node.pk)
    node_id = node.pk
    node.delete()
    dhcp.sync_host(node_id)
    assert not (hostsdir / str(node_id)).exists()
    assert (hostsdir / "removed").read_text() == "52:54:00:aa:00:01,ignore\n"


@pytest.mark.django_db
def test_proxy_mode_entries_carry_the_ignore_tag(hostsdir, settings):
    settings.PUREBOOT_DHCP_MODE = "proxy"
    node = make_node("retired", macs=["52:54:00:aa:00:01"])
    path = dhcp.sync_host(node.pk)
    assert path.read_text() == "52:54:00:aa:00:01,set:pureboot-ignore,ignore\n"


@pytest.mark.django_db
def test_the_celery_task_is_thin_and_named(hostsdir):
    node = make_node("pending", macs=["52:54:00:aa:00:01"])
    assert sync_dhcp_host.name == "bootserve.sync_dhcp_host"
    sync_dhcp_host.apply(args=[node.pk]).get()
    assert (hostsdir / str(node.pk)).read_text() == "52:54:00:aa:00:01\n"


# --- rebuild -----------------------------------------------------------------


@pytest.mark.django_db
def test_rebuild_rewrites_every_file_and_ignores_orphans(hostsdir):
    pending = make_node("pending", macs=["52:54:00:aa:00:01"])
    active = make_node("active", macs=["52:54:00:aa:00:02", "52:54:00:aa:00:03"])
    hostsdir.mkdir()
    (hostsdir / "99999").write_text("52:54:00:aa:00:99\n52:54:00:aa:00:02\n")  # gone node
    (hostsdir / str(pending.pk)).write_text("52:54:00:aa:00:01,ignore\n")  # out of date
    counts = dhcp.rebuild_hostsdir()
    assert counts == {"answered": 1, "ignored": 2, "written": 2, "removed": 1}
    assert (hostsdir / str(pending.pk)).read_text() == "52:54:00:aa:00:01\n"
    assert (hostsdir / str(active.pk)).read_text() == (
        "52:54:00:aa:00:02,ignore\n52:54:00:aa:00:03,ignore\n"
    )
    assert (hostsdir / "removed").read_text() == "52:54:00:aa:00:99,ignore\n"
    assert not (hostsdir / "99999").exists()


@pytest.mark.django_db
def test_a_second_rebuild_changes_nothing(hostsdir):
    node = make_node("pending", macs=["52:54:00:aa:00:01"])
    dhcp.rebuild_hostsdir()
    inode = (hostsdir / str(node.pk)).stat().st_ino
    assert dhcp.rebuild_hostsdir()["written"] == 0
    assert (hostsdir / str(node.pk)).stat().st_ino == inode  # no inotify churn


@pytest.mark.django_db
def test_rebuild_rewrites_the_new_owner_of_a_moved_mac(hostsdir):
    """dnsmasq keeps the newest record per MAC: the new owner's must be newest."""
    node = make_node("active", macs=["52:54:00:aa:00:01"])
    dhcp.rebuild_hostsdir()
    (hostsdir / "4242").write_text("52:54:00:aa:00:01\n")  # its old owner, out of date
    assert dhcp.rebuild_hostsdir()["written"] == 1
    assert (hostsdir / str(node.pk)).read_text() == "52:54:00:aa:00:01,ignore\n"


@pytest.mark.django_db
def test_rebuild_follows_a_mode_change(hostsdir, settings):
    node = make_node("active", macs=["52:54:00:aa:00:01"])
    dhcp.rebuild_hostsdir()
    settings.PUREBOOT_DHCP_MODE = "proxy"
    assert dhcp.rebuild_hostsdir()["written"] == 1
    assert (hostsdir / str(node.pk)).read_text() == (
        "52:54:00:aa:00:01,set:pureboot-ignore,ignore\n"
    )


# --- commands ----------------------------------------------------------------

FULL_ARGS = [
    "--interface",
    "br0",
    "--mode",
    "full",
    "--range",
    "10.99.0.100,10.99.0.200",
    "--netmask",
    "255.255.255.0",
    "--router",
    "10.99.0.1",
    "--dns",
    "10.99.0.1",
    "--tftp-server",
    "10.99.0.1",
    "--http-base",
    "http://10.99.0.1:8000",
]


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("dhcp_config", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_dhcp_config_prints_a_checked_config(hostsdir):
    out, err = run(*FULL_ARGS)
    assert "dhcp-range=10.99.0.100,10.99.0.200,255.255.255.0,1h" in out
    assert f"dhcp-hostsdir={hostsdir}" in out
    assert err == ""


def test_dhcp_config_writes_the_output_file(hostsdir, tmp_path):
    target = tmp_path / "etc" / "pureboot-dnsmasq.conf"
    out, err = run(*FULL_ARGS, "--output", str(target), "--no-discovery", "--log-dhcp")
    assert out == "" and f"wrote {target}" in err
    text = target.read_text()
    assert "dhcp-ignore=tag:!known\n" in text and "log-dhcp\n" in text
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    dhcp.check_config(text)


def test_dhcp_config_proxy_mode(hostsdir, settings):
    settings.PUREBOOT_DHCP_MODE = "proxy"
    out, _ = run(
        "--interface",
        "eno1",
        "--mode",
        "proxy",
        "--proxy-subnet",
        "192.168.1.0/24",
        "--tftp-server",
        "192.168.1.5",
        "--http-base",
        "http://192.168.1.5:8000",
    )
    assert "dhcp-range=192.168.1.0,proxy,255.255.255.0" in out


def test_dhcp_config_from_settings_alone(hostsdir, settings):
    settings.PUREBOOT_DHCP_INTERFACE = "br0"
    settings.PUREBOOT_DHCP_RANGE = "10.99.0.100,10.99.0.200"
    settings.PUREBOOT_DHCP_TFTP_SERVER = "10.99.0.1"
    settings.PUREBOOT_DHCP_HTTP_BASE = "http://10.99.0.1:8000"
    out, _ = run()
    assert "interface=br0" in out and "dhcp-range=10.99.0.100,10.99.0.200,1h" in out


@pytest.mark.parametrize(
    "change,message",
    [
        (
            ["--range", "10.99.0.100-10.99.0.200"],
            "--range '10.99.0.100-10.99.0.200': use START,END",
        ),
        (["--range", "10.99.0.100,"], "use START,END"),
        (["--interface", "br 0"], "interface 'br 0'"),
        (["--mode", "relay"], "invalid choice: 'relay'"),
        (["--dns", "10.99.0.1,resolver"], "DNS server 'resolver'"),
        (["--http-base", "10.99.0.1:8000"], "HTTP base '10.99.0.1:8000'"),
        (["--proxy-subnet", "10.99.0.0/24"], "--proxy-subnet: not used in full mode"),
        (["--hostsdir", "hosts"], "hosts dir 'hosts'"),
    ],
)
def test_dhcp_config_refuses_bad_options_clearly(hostsdir, change, message):
    args = list(FULL_ARGS)
    for i in range(0, len(change), 2):
        if change[i] in args:
            args[args.index(change[i]) + 1] = change[i + 1]
        else:
            args += change[i : i + 2]
    with pytest.raises(CommandError) as exc:
        run(*args)
    assert message in str(exc.value)


def test_dhcp_config_refuses_full_mode_options_in_proxy_mode(hostsdir):
    with pytest.raises(CommandError, match="--range, --router: not used in proxy mode"):
        run("--mode", "proxy", "--range", "10.0.0.1,10.0.0.9", "--router", "10.0.0.1")


def test_dhcp_config_needs_a_hosts_dir(settings):
    settings.PUREBOOT_DHCP_HOSTSDIR = ""
    with pytest.raises(CommandError, match="--hostsdir is required"):
        run(*FULL_ARGS)


def test_dhcp_config_refuses_a_mode_its_host_entries_are_not_written_for(hostsdir, settings):
    settings.PUREBOOT_DHCP_MODE = "full"
    with pytest.raises(CommandError, match="PUREBOOT_DHCP_MODE is full"):
        run(
            "--interface",
            "br0",
            "--mode",
            "proxy",
            "--proxy-subnet",
            "10.99.0.0/24",
            "--tftp-server",
            "10.99.0.1",
            "--http-base",
            "http://10.99.0.1:8000",
        )


def test_dhcp_config_notes_a_hosts_dir_pureboot_does_not_keep(hostsdir, tmp_path):
    _, err = run(*FULL_ARGS, "--hostsdir", str(tmp_path / "elsewhere"))
    assert "dhcp_sync --hostsdir" in err


def test_dhcp_config_notes_a_lease_file_boot_http_does_not_read(hostsdir, settings, tmp_path):
    settings.PUREBOOT_DHCP_LEASEFILE = ""
    _, err = run(*FULL_ARGS, "--leasefile", str(tmp_path / "leases"))
    assert f"PUREBOOT_DHCP_LEASEFILE (not set), not in {tmp_path / 'leases'}" in err
    settings.PUREBOOT_DHCP_LEASEFILE = str(tmp_path / "leases")
    out, err = run(*FULL_ARGS)
    assert f"dhcp-leasefile={tmp_path / 'leases'}" in out and err == ""
    _, err = run(*FULL_ARGS, "--leasefile", str(tmp_path / "other"))
    assert f"PUREBOOT_DHCP_LEASEFILE ({tmp_path / 'leases'}), not in" in err


def test_dhcp_config_names_the_missing_package(hostsdir, monkeypatch):
    monkeypatch.setattr(dhcp.shutil, "which", lambda *a, **k: None)
    with pytest.raises(CommandError, match="apt-get install dnsmasq-base"):
        run(*FULL_ARGS)
    out, _ = run(*FULL_ARGS, "--no-check")  # a config made for another host
    assert "interface=br0" in out


@pytest.mark.django_db
def test_dhcp_sync_command(hostsdir):
    make_node("pending", macs=["52:54:00:aa:00:01"])
    make_node("retired", macs=["52:54:00:aa:00:02"])
    out = StringIO()
    call_command("dhcp_sync", stdout=out)
    assert "1 MACs answered, 1 ignored" in out.getvalue()
    assert len(list(hostsdir.glob("[0-9]*"))) == 2


@pytest.mark.django_db
def test_dhcp_sync_without_a_hosts_dir(settings):
    settings.PUREBOOT_DHCP_HOSTSDIR = ""
    with pytest.raises(CommandError, match="PUREBOOT_DHCP_HOSTSDIR is not set"):
        call_command("dhcp_sync")


# --- the lab: the real dnsmasq in a private network namespace ----------------

TOOLS = {"ip": "iproute2", "dnsmasq": "dnsmasq-base", "busybox": "busybox-static"}
PXE_BIOS = ["-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"]
PXE_UEFI = ["-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007"]
HTTP_BOOT = ["-V", "HTTPClient:Arch:00016:UNDI:003001", "-x", "0x5d:0010"]
IPXE = [*PXE_BIOS, "-x", "0xaf:b10101"]
PXE_ARM64 = ["-V", "PXEClient:Arch:00011:UNDI:003000", "-x", "0x5d:000b"]
HTTP_ARM64 = ["-V", "HTTPClient:Arch:00019:UNDI:003000", "-x", "0x5d:0013"]
PXE_ARM32 = ["-V", "PXEClient:Arch:00010:UNDI:003000", "-x", "0x5d:000a"]
GUID = ["-x", "0x61:00" + "11" * 16]  # UEFI and proxy PXE need option 97
UDHCPC_SCRIPT = '#!/bin/sh\n[ "$1" = bound ] && env > "$(dirname "$0")/lease"\nexit 0\n'


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not path:
        pytest.fail(f"lab: {name} is missing: apt-get install {TOOLS[name]}")
    return path


class Lab:
    """A bridge with a client veth in a private namespace, and dnsmasq bound to the bridge."""

    def __init__(self, workdir: Path):
        self.tools = {name: _tool(name) for name in TOOLS}
        self.ns = f"pbtest-{uuid.uuid4().hex[:10]}"
        self.dir = workdir
        self.hosts = workdir / "hosts"
        self.log = workdir / "dnsmasq.log"
        self.proc: subprocess.Popen | None = None
        self.created = False

    def sh(
        self, *args: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=check)

    def ns_run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.sh(self.tools["ip"], "netns", "exec", self.ns, *args, **kw)

    def up(self) -> None:
        ip = self.tools["ip"]
        made = self.sh(ip, "netns", "add", self.ns, check=False)
        if made.returncode != 0:
            pytest.fail(f"lab: `ip netns add` failed (needs root): {made.stderr.strip()}")
        self.created = True
        for cmd in (
            "link set lo up",
            "link add br0 type bridge",
            "addr add 10.99.0.1/24 dev br0",
            "link set br0 up",
            "link add v0 type veth peer name c0",
            "link set v0 master br0",
            "link set v0 up",
            "link set c0 up",
        ):
            self.sh(ip, "-n", self.ns, *cmd.split())
        (self.dir / "udhcpc.sh").write_text(UDHCPC_SCRIPT)
        (self.dir / "udhcpc.sh").chmod(0o755)

    def start(self, config: str) -> None:
        conf = self.dir / "dnsmasq.conf"
        conf.write_text(config)
        self.proc = subprocess.Popen(
            [
                self.tools["ip"],
                "netns",
                "exec",
                self.ns,
                self.tools["dnsmasq"],
                "--keep-in-foreground",
                f"--conf-file={conf}",
                f"--pid-file={self.dir / 'pid'}",
                "--log-facility=-",
            ],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while "sockets bound exclusively" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"lab: dnsmasq did not start:\n{self.log.read_text()}")
            time.sleep(0.1)

    def dhcp(self, mac: str, *extra: str, tries: int = 4, wait: int = 2) -> dict[str, str] | None:
        """One DHCP exchange from ``mac``: the lease's variables, or None if unanswered."""
        self.ns_run("ip", "link", "set", "c0", "down")
        self.ns_run("ip", "link", "set", "c0", "address", mac)
        self.ns_run("ip", "link", "set", "c0", "up")
        lease = self.dir / "lease"
        lease.unlink(missing_ok=True)
        self.ns_run(
            self.tools["busybox"],
            "udhcpc",
            "-n",
            "-q",
            "-f",
            "-i",
            "c0",
            "-t",
            str(tries),
            "-T",
            str(wait),
            "-s",
            str(self.dir / "udhcpc.sh"),
            *extra,
            check=False,
            timeout=tries * wait + 15,
        )
        if not lease.exists():
            return None
        return dict(line.split("=", 1) for line in lease.read_text().splitlines() if "=" in line)

    def logged(self, text: str, timeout: float = 3) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log.read_text():
                return True
            time.sleep(0.1)
        return False

    def down(self) -> None:
        stop(self.proc)
        if self.created:
            self.sh(self.tools["ip"], "netns", "del", self.ns, check=False)


def test_the_lab_fails_rather_than_skips_without_its_tools(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(pytest.fail.Exception, match="apt-get install iproute2"):
        Lab(tmp_path)


@pytest.fixture
def lab(settings):
    # World-readable: dnsmasq reads the hosts dir as `nobody` after starting.
    workdir = Path(tempfile.mkdtemp(prefix="pureboot-lab-"))
    workdir.chmod(0o755)
    lab = Lab(workdir)
    settings.PUREBOOT_DHCP_HOSTSDIR = str(lab.hosts)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
        shutil.rmtree(workdir, ignore_errors=True)
        assert lab.ns not in lab.sh(lab.tools["ip"], "netns", "list").stdout


def lab_network(lab: Lab, **kw) -> str:
    net = network(leasefile=str(lab.dir / "leases"), log_dhcp=True, **kw)
    return dhcp.render_config(net, lab.hosts)


@pytest.mark.lab
@pytest.mark.django_db
def test_lab_full_dhcp_answers_provisioning_machines_only(lab, settings, client):
    settings.PUREBOOT_DHCP_MODE = "full"
    pending = make_node("pending", macs=["52:54:00:5a:00:01"])
    active = make_node("active", macs=["52:54:00:5a:00:02"])
    for node in (pending, active):
        dhcp.sync_host(node.pk)
    lab.start(lab_network(lab))

    offer = lab.dhcp("52:54:00:5a:00:01", *PXE_BIOS)
    assert offer is not None, lab.log.read_text()
    assert offer["boot_file"] == "undionly.kpxe" and offer["siaddr"] == "10.99.0.1"
    assert offer["ip"].startswith("10.99.0.") and offer["router"] == "10.99.0.1"

    assert lab.dhcp("52:54:00:5a:00:02", *PXE_BIOS, tries=2, wait=1) is None
    assert lab.logged("52:54:00:5a:00:02 ignored")

    # The lifecycle moves on; dnsmasq follows without a restart.
    Node.objects.filter(pk=pending.pk).update(state="installed")
    Node.objects.filter(pk=active.pk).update(state="reprovision")
    for node in (pending, active):
        dhcp.sync_host(node.pk)
    assert lab.logged(f"{lab.hosts / str(active.pk)} new or modified")
    assert lab.dhcp("52:54:00:5a:00:01", tries=2, wait=1) is None
    reprovision = lab.dhcp("52:54:00:5a:00:02", *IPXE)
    assert reprovision is not None, lab.log.read_text()
    assert reprovision["boot_file"] == (
        "http://10.99.0.1:8000/boot/ipxe?mac=${net0/mac}&uuid=${uuid}"
        "&arch=${buildarch}&platform=${platform}"
    )

    # Unknown machines: answered only when they network-boot (discovery on).
    assert lab.dhcp("52:54:00:5a:00:03", tries=2, wait=1) is None
    uefi = lab.dhcp("52:54:00:5a:00:03", *PXE_UEFI, *GUID)
    assert uefi is not None and uefi["boot_file"] == "snponly.efi"
    http = lab.dhcp("52:54:00:5a:00:04", *HTTP_BOOT)
    assert http is not None and http["boot_file"] == "http://10.99.0.1:8000/boot/http/snponly.efi"
    # udhcpc does not export option 60; dnsmasq's log shows it sent "HTTPClient".
    assert lab.logged("option: 60 vendor-class  " + b"HTTPClient".hex(":"))
    # The lease file dnsmasq wrote tells /boot/http who holds that address.
    deadline = time.monotonic() + 5
    while leases.mac_for(http["ip"], lab.dir / "leases") is None:
        assert time.monotonic() < deadline, (lab.dir / "leases").read_text()
        time.sleep(0.1)
    assert leases.mac_for(http["ip"], lab.dir / "leases") == "52:54:00:5a:00:04"
    assert leases.mac_for(offer["ip"], lab.dir / "leases") == "52:54:00:5a:00:01"
    # So its HTTP Boot request is answered for that machine: installed, a fast 404.
    settings.PUREBOOT_DHCP_LEASEFILE = str(lab.dir / "leases")
    make_node("installed", macs=["52:54:00:5a:00:04"])
    assert client.head("/boot/http/snponly.efi", REMOTE_ADDR=http["ip"]).status_code == 404
    # ARM64 UEFI: PXE gets GRUB over TFTP, HTTP Boot gets it by URL; 32-bit ARM nothing.
    arm = lab.dhcp("52:54:00:5a:00:06", *PXE_ARM64, *GUID)
    assert arm is not None and arm["boot_file"] == "grubnetaa64.efi", lab.log.read_text()
    assert arm["siaddr"] == "10.99.0.1"
    arm_http = lab.dhcp("52:54:00:5a:00:07", *HTTP_ARM64, *GUID)
    assert arm_http is not None
    assert arm_http["boot_file"] == "http://10.99.0.1:8000/boot/http/grubnetaa64.efi"
    arm32 = lab.dhcp("52:54:00:5a:00:08", *PXE_ARM32, *GUID)
    assert arm32 is not None and not arm32.get("boot_file"), arm32
    # Raspberry Pi 3, 4 and 5 (their OUIs; each sends the BIOS PXE vendor class).
    for mac in ("b8:27:eb:5a:00:05", "dc:a6:32:5a:00:05", "2c:cf:67:5a:00:05"):
        pi = lab.dhcp(mac, *PXE_BIOS, *GUID, "-O", "43")
        assert pi is not None and b"Raspberry Pi Boot" in bytes.fromhex(pi["opt43"]), mac
        assert pi.get("boot_file") == "bootcode.bin" and pi["siaddr"] == "10.99.0.1"

    # Full-mode entries carry no tag, so a reload (SIGHUP) is safe.
    reread = f"read {lab.hosts / str(pending.pk)}\n"
    reads = lab.log.read_text().count(reread)
    os.kill(int((lab.dir / "pid").read_text()), signal.SIGHUP)
    deadline = time.monotonic() + 5
    while lab.log.read_text().count(reread) == reads and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lab.log.read_text().count(reread) > reads, lab.log.read_text()
    time.sleep(0.5)
    assert lab.proc.poll() is None, lab.log.read_text()


@pytest.mark.lab
@pytest.mark.django_db
def test_lab_proxy_dhcp_ignores_installed_machines(lab, settings):
    """Proxy answers carry no address, so udhcpc never completes: dnsmasq's log is the witness."""
    settings.PUREBOOT_DHCP_MODE = "proxy"
    installing = make_node("installing", macs=["52:54:00:5b:00:01"])
    active = make_node("active", macs=["52:54:00:5b:00:02"])
    for node in (installing, active):
        dhcp.sync_host(node.pk)
    lab.start(lab_network(lab, mode="proxy"))

    lab.dhcp("52:54:00:5b:00:01", *PXE_BIOS, *GUID, tries=1, wait=1)
    assert lab.logged("PXE(br0) 52:54:00:5b:00:01 proxy\n"), lab.log.read_text()
    assert lab.logged("bootfile name: undionly.kpxe")
    lab.dhcp("52:54:00:5b:00:02", *PXE_BIOS, *GUID, tries=1, wait=1)
    assert lab.logged("PXE(br0) 52:54:00:5b:00:02 proxy-ignored"), lab.log.read_text()

    Node.objects.filter(pk=active.pk).update(state="reprovision")
    dhcp.sync_host(active.pk)
    assert lab.logged(f"{lab.hosts / str(active.pk)} new or modified")
    lab.dhcp("52:54:00:5b:00:02", *PXE_UEFI, *GUID, tries=1, wait=1)
    assert lab.logged("PXE(br0) 52:54:00:5b:00:02 proxy\n"), lab.log.read_text()
    assert lab.logged("bootfile name: snponly.efi")


@pytest.mark.django_db
def test_a_transition_rewrites_the_nodes_dhcp_entry(
    settings, tmp_path, django_capture_on_commit_callbacks
):
    from nodes import services as node_services
    from pureboot.celery import app
    from tests.factories import make_node, make_user, perform_approved

    hostsdir = tmp_path / "hosts"
    hostsdir.mkdir()
    settings.PUREBOOT_DHCP_HOSTSDIR = str(hostsdir)
    settings.PUREBOOT_DHCP_MODE = "full"
    old = app.conf.get("task_always_eager", False)
    app.conf.update(task_always_eager=True)
    try:
        node = make_node("installed", macs=["52:54:00:00:77:01"])
        alice, bob = make_user("Admin"), make_user("Admin")
        with django_capture_on_commit_callbacks(execute=True):
            perform_approved(node.pk, "reprovision", alice, bob)
        assert "52:54:00:00:77:01" in (hostsdir / str(node.pk)).read_text()
        assert "ignore" not in (hostsdir / str(node.pk)).read_text()
        with django_capture_on_commit_callbacks(execute=True):
            # reprovision -> retire holds no installed system: one person may.
            node_services.perform(node.pk, "retire", node_services.Actor.of(alice))
        assert "ignore" in (hostsdir / str(node.pk)).read_text()
    finally:
        app.conf.update(task_always_eager=old)


def test_pxelinux_as_the_bios_loader_also_takes_bios_ipxe_roms():
    text = dhcp.render_config(network(bios_loader="pxelinux"), "/var/lib/pureboot/dhcp-hosts")
    dhcp.check_config(text)
    assert "dhcp-boot=tag:bios,tag:!rpi,lpxelinux.0,,10.99.0.1" in lines(text)
    # iPXE clients that are not BIOS ones still get the iPXE URL.
    assert any(line.startswith("dhcp-boot=tag:ipxe,tag:!bios,http://") for line in lines(text))
    default = dhcp.render_config(network(), "/var/lib/pureboot/dhcp-hosts")
    assert "dhcp-boot=tag:!ipxe,tag:bios,tag:!rpi,undionly.kpxe,,10.99.0.1" in lines(default)
