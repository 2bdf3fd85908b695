"""UEFI HTTP Boot: /boot/http answers from the decision engine, recognising clients by lease."""

from __future__ import annotations

import time

import pytest

from nodes import services as node_services
from nodes.models import Node, NodeEvent
from tests.factories import make_node, make_workflow
from workflows.models import WorkflowRun

pytestmark = pytest.mark.django_db

MAC = "52:54:00:12:34:56"
OTHER_MAC = "52:54:00:12:34:57"
IP = "10.99.0.150"
OTHER_IP = "10.99.0.151"
URL = "/boot/http/snponly.efi"
EFI = bytes(range(256)) * 40
FUTURE = int(time.time()) + 3600
NETBOOT = """\
name: netboot
tasks:
  - type: pxe_boot
    kernel: /ubuntu/vmlinuz
    initrd: /ubuntu/initrd
  - type: ubuntu_autoinstall
"""


@pytest.fixture(autouse=True)
def boot_root(settings, tmp_path):
    root = tmp_path / "boot"
    root.mkdir()
    (root / "snponly.efi").write_bytes(EFI)
    settings.PUREBOOT_BOOT_ROOT = root
    return root


@pytest.fixture(autouse=True)
def leasefile(settings, tmp_path):
    path = tmp_path / "dnsmasq.leases"
    path.write_text(f"{FUTURE} {MAC} {IP} * *\n{FUTURE} {OTHER_MAC} {OTHER_IP} web02 *\n")
    settings.PUREBOOT_DHCP_LEASEFILE = str(path)
    return path


def fetch(client, method="get", *, ip=IP, **kw):
    return getattr(client, method)(URL, REMOTE_ADDR=ip, **kw)


def body(resp) -> bytes:
    return b"".join(resp.streaming_content) if resp.streaming else resp.content


@pytest.mark.parametrize("method", ["head", "get"])
@pytest.mark.parametrize("state", ["installed", "active", "retired"])
def test_machines_that_boot_their_disk_get_a_fast_404(client, state, method):
    node = make_node(state, macs=[MAC])
    resp = fetch(client, method)
    assert resp.status_code == 404
    assert resp["Cache-Control"] == "no-store"
    assert len(resp.content) < 64
    node.refresh_from_db()
    assert node.state == state and node.last_seen_at is None  # read-only
    assert not NodeEvent.objects.filter(node=node).exists()


def test_an_etag_does_not_turn_a_404_into_a_304(client):
    etag = fetch(client)["ETag"]
    make_node("installed", macs=[MAC])
    assert fetch(client, HTTP_IF_NONE_MATCH=etag).status_code == 404


@pytest.mark.parametrize("state", ["discovered", "failed", "reprovision", "deprovisioning"])
def test_machines_that_network_boot_get_the_file(client, state):
    make_node(state, macs=[MAC])
    head = fetch(client, "head")
    assert head.status_code == 200 and head["Content-Length"] == str(len(EFI))
    assert head["Cache-Control"] == "no-store"
    resp = fetch(client)
    assert resp.status_code == 200 and body(resp) == EFI
    assert Node.objects.get().state == state


def test_a_pending_node_gets_the_file_and_nothing_starts(client):
    node = make_node(macs=[MAC])
    node_services.perform(
        node.pk, "assign", node_services.SYSTEM, workflow=make_workflow("netboot", NETBOOT)
    )
    assert body(fetch(client)) == EFI
    node.refresh_from_db()
    assert node.state == "pending" and node.install_attempts == 0
    assert not WorkflowRun.objects.exists()  # the iPXE stage starts the install


def test_installing_gets_the_file_until_its_attempts_are_used_up(client, settings):
    settings.PUREBOOT_MAX_INSTALL_ATTEMPTS = 2
    node = make_node(macs=[MAC])
    node_services.perform(
        node.pk, "assign", node_services.SYSTEM, workflow=make_workflow("netboot", NETBOOT)
    )
    Node.objects.filter(pk=node.pk).update(state="installing", install_attempts=1)
    assert body(fetch(client)) == EFI
    assert Node.objects.get(pk=node.pk).install_attempts == 1  # counted by the iPXE stage
    Node.objects.filter(pk=node.pk).update(install_attempts=2)
    assert fetch(client).status_code == 404  # the engine says: boot the disk
    assert Node.objects.get(pk=node.pk).state == "installing"  # failing it is not ours


def test_unknown_machines_get_the_file_and_are_not_registered(client):
    assert body(fetch(client)) == EFI  # leased, but no node has the MAC
    assert body(fetch(client, ip="10.99.0.9")) == EFI  # no lease at all
    assert not Node.objects.exists()  # the iPXE stage registers them


def test_discovery_off_refuses_known_unknowns_only(client, settings):
    settings.PUREBOOT_DISCOVERY = False
    assert fetch(client).status_code == 404  # leased MAC, no node: /boot/ipxe would 404 too
    assert fetch(client, ip="10.99.0.9").status_code == 200  # cannot tell who it is


def test_range_requests(client):
    make_node("pending", macs=[MAC])
    part = fetch(client, HTTP_RANGE="bytes=256-511")
    assert part.status_code == 206 and body(part) == bytes(range(256))
    assert part["Content-Range"] == f"bytes 256-511/{len(EFI)}"
    assert fetch(client, HTTP_RANGE=f"bytes={len(EFI)}-").status_code == 416


@pytest.mark.parametrize(
    "path", ["../secret.txt", "ubuntu/../../secret.txt", "nope.efi", "%00", "sub/"]
)
def test_bad_paths_are_404_without_a_query(client, boot_root, path, django_assert_num_queries):
    (boot_root.parent / "secret.txt").write_text("no")
    make_node("pending", macs=[MAC])
    with django_assert_num_queries(0):
        assert client.get(f"/boot/http/{path}", REMOTE_ADDR=IP).status_code == 404


def test_a_symlink_out_of_the_boot_root_is_404(client, boot_root):
    (boot_root.parent / "secret.txt").write_text("no")
    (boot_root / "link.efi").symlink_to(boot_root.parent / "secret.txt")
    assert client.get("/boot/http/link.efi", REMOTE_ADDR=IP).status_code == 404


@pytest.mark.parametrize(
    "content",
    [
        None,  # no lease file
        b"",
        b"\x00\xff garbage\nduid 00:01\n" + f"soon {MAC} {IP} * *\n".encode(),
        f"{FUTURE} {MAC}\n".encode(),  # cut short
        f"{FUTURE - 7200} {MAC} {IP} * *\n".encode(),  # expired
    ],
)
def test_an_unreadable_lease_means_unknown(client, leasefile, content):
    make_node("installed", macs=[MAC])
    if content is None:
        leasefile.unlink()
    else:
        leasefile.write_bytes(content)
    assert body(fetch(client)) == EFI


def test_no_lease_file_setting_means_unknown(client, settings):
    settings.PUREBOOT_DHCP_LEASEFILE = ""
    make_node("installed", macs=[MAC])
    assert body(fetch(client)) == EFI


def test_the_mac_parameter_wins_over_the_lease(client):
    make_node("installed", macs=[MAC])
    make_node("pending", macs=[OTHER_MAC])
    assert fetch(client, data={"mac": OTHER_MAC}).status_code == 200  # lease says installed
    assert fetch(client, ip=OTHER_IP, data={"mac": MAC}).status_code == 404
    assert fetch(client, ip="10.99.0.9", data={"mac": MAC.upper()}).status_code == 404
    assert fetch(client, ip=OTHER_IP, data={"mac": ""}).status_code == 200  # empty: the lease
    assert fetch(client, data={"mac": "zz"}).status_code == 400


def test_a_dual_stack_listener_address_is_recognised(client):
    make_node("active", macs=[MAC])
    assert fetch(client, ip=f"::ffff:{IP}").status_code == 404


def test_query_count(client, django_assert_num_queries):
    make_node("installed", macs=[MAC])
    make_node("pending", macs=[OTHER_MAC])
    # Find the node; nothing written but the boot record.
    with django_assert_num_queries(2):
        assert fetch(client, "head").status_code == 404
    with django_assert_num_queries(2):
        assert fetch(client, ip=OTHER_IP).status_code == 200
    with django_assert_num_queries(1):  # nobody to look up; the boot record
        assert fetch(client, ip="10.99.0.9").status_code == 200


def test_the_file_goes_through_nginx_the_404_does_not(client, settings):
    settings.PUREBOOT_ACCEL_REDIRECT = "/protected-images/"
    make_node("installed", macs=[MAC])
    make_node("pending", macs=[OTHER_MAC])
    refused = fetch(client)
    assert refused.status_code == 404 and "X-Accel-Redirect" not in refused
    for method in ("head", "get"):
        resp = fetch(client, method, ip=OTHER_IP)
        assert resp.status_code == 200 and resp.content == b""
        assert resp["X-Accel-Redirect"] == "/protected-boot/snponly.efi"
        assert resp["Cache-Control"] == "no-store"
