"""The boot endpoints as firmware and iPXE use them."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from nodes import services as node_services
from nodes.models import Node, NodeEvent
from tests.factories import make_node, make_user, make_workflow
from workflows.models import WorkflowRun

pytestmark = pytest.mark.django_db

MAC = "52:54:00:12:34:56"
NETBOOT = """\
name: netboot
tasks:
  - type: pxe_boot
    kernel: /ubuntu/vmlinuz
    initrd: /ubuntu/initrd
    cmdline: ip=dhcp
  - type: ubuntu_autoinstall
"""


def ipxe(client, **query):
    query.setdefault("mac", MAC)
    return client.get("/boot/ipxe", query)


def test_unknown_machine_is_discovered_and_waits(client):
    resp = ipxe(client, uuid="4C4C4544-0042-3510-8052-B7C04F4E3732", arch="x86_64", platform="efi")
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/plain")
    script = resp.content.decode()
    assert script.startswith("#!ipxe") and "waiting for an assignment" in script
    assert "chain --replace --autofree" in script and "${net0/mac}" in script
    assert script.rstrip().endswith("exit 1")  # UEFI local boot at the end of the wait
    node = Node.objects.get()
    assert node.state == "discovered" and node.firmware == "uefi"
    assert str(node.system_uuid) == "4c4c4544-0042-3510-8052-b7c04f4e3732"
    assert node.interfaces.get().mac == MAC


def test_polling_writes_no_history_and_costs_few_queries(client, settings):
    ipxe(client)
    node = Node.objects.get()
    events = NodeEvent.objects.filter(node=node).count()
    with CaptureQueriesContext(connection) as ctx:
        for _ in range(5):
            assert ipxe(client).status_code == 200
    # Find the node; last_seen_at is written once per PUREBOOT_LAST_SEEN_SECONDS;
    # one boot record ("wait"; its repeats are counted in memory).
    assert len(ctx.captured_queries) == 5 + 1 + 1
    assert NodeEvent.objects.filter(node=node).count() == events
    seen = Node.objects.get(pk=node.pk).last_seen_at
    assert seen is not None
    settings.PUREBOOT_LAST_SEEN_SECONDS = 0
    with CaptureQueriesContext(connection) as ctx:
        assert ipxe(client).status_code == 200
    assert len(ctx.captured_queries) == 2 and Node.objects.get(pk=node.pk).last_seen_at > seen


def test_pending_node_gets_its_install_and_starts_it(client):
    node = make_node(macs=[MAC], hostname="web01")
    node_services.perform(
        node.pk, "assign", node_services.SYSTEM, workflow=make_workflow("netboot", NETBOOT)
    )
    script = ipxe(client, platform="pcbios").content.decode()
    assert "kernel http://testserver/boot/files/ubuntu/vmlinuz initrd=initrd" in script
    assert "initrd --name initrd http://testserver/boot/files/ubuntu/initrd" in script
    assert "autoinstall ds=nocloud-net;s=http://testserver/api/v1/install/" in script
    assert "sanboot --no-describe --drive 0x80" in script  # Rule D: a failed boot falls through
    node.refresh_from_db()
    assert node.state == "installing" and node.install_attempts == 1
    run = WorkflowRun.objects.get(node=node)
    token = script.split("/api/v1/install/")[1].split("/")[0]
    assert client.get(f"/api/v1/install/{token}/user-data").status_code == 200
    assert run.status == "running"


def test_installing_retries_then_fails_and_boots_locally(client, settings):
    settings.PUREBOOT_MAX_INSTALL_ATTEMPTS = 2
    settings.PUREBOOT_BOOT_SESSION_SECONDS = 0  # every request here is a new boot
    node = make_node(macs=[MAC])
    node_services.perform(
        node.pk, "assign", node_services.SYSTEM, workflow=make_workflow("netboot", NETBOOT)
    )
    first = ipxe(client).content.decode()
    second = ipxe(client).content.decode()
    assert "kernel " in first and "kernel " in second
    assert first.split("/api/v1/install/")[1][:40] == second.split("/api/v1/install/")[1][:40]
    assert Node.objects.get(pk=node.pk).install_attempts == 2
    third = ipxe(client).content.decode()
    assert "kernel " not in third and "booting the local disk" in third
    assert Node.objects.get(pk=node.pk).state == "failed"


@pytest.mark.parametrize(
    "platform,command",
    [("pcbios", "sanboot --no-describe --drive 0x80"), ("efi", "exit 1")],
)
@pytest.mark.parametrize("state", ["installed", "active"])
def test_installed_machines_boot_their_disk(client, state, platform, command):
    make_node(state, macs=[MAC])
    script = ipxe(client, platform=platform).content.decode()
    assert command in script and "kernel" not in script
    assert Node.objects.get().state == state  # no reinstall loop


def test_retired_machines_get_nothing(client):
    make_node("retired", macs=[MAC])
    assert ipxe(client).status_code == 404


def test_discovery_off(client, settings):
    settings.PUREBOOT_DISCOVERY = False
    assert ipxe(client).status_code == 404
    assert not Node.objects.exists()


@pytest.mark.parametrize("query", [{"mac": "zz"}, {"mac": ""}, {}])
def test_bad_boot_requests_are_400(client, query):
    resp = client.get("/boot/ipxe", query)
    assert resp.status_code == 400
    assert not Node.objects.exists()


def test_head_is_answered(client):
    make_node("installed", macs=[MAC])
    assert client.head("/boot/ipxe", {"mac": MAC}).status_code == 200


def test_next_is_read_only_json(client):
    """Anyone gets what a booting machine needs; a signed-in user who may see the node, more."""
    node = make_node(macs=[MAC])
    node_services.perform(
        node.pk, "assign", node_services.SYSTEM, workflow=make_workflow("netboot", NETBOOT)
    )
    resp = client.get("/api/v1/next", {"mac": "52-54-00-12-34-56"})
    assert resp.status_code == 200
    assert resp.json() == {"action": "install"}  # no state, workflow, steps or node id
    unknown = client.get("/api/v1/next", {"mac": "52:54:00:99:99:99"})
    assert unknown.status_code == 200 and set(unknown.json()) == {"action"}
    assert client.get("/api/v1/next", {"mac": "bad"}).status_code == 400
    client.force_login(make_user("Admin"))
    body = client.get("/api/v1/next", {"mac": "52-54-00-12-34-56"}).json()
    assert body["workflow"] == "netboot" and body["action"] == "install"
    assert body["kernel"] == "/ubuntu/vmlinuz" and body["state"] == "pending"
    assert "install/" not in str(body)  # no token, nothing secret
    assert Node.objects.get(pk=node.pk).state == "pending"  # read-only
    assert not Node.objects.filter(interfaces__mac="52:54:00:99:99:99").exists()


def test_boot_files_with_range_and_no_escape(client, settings, tmp_path):
    settings.PUREBOOT_BOOT_ROOT = tmp_path
    (tmp_path / "ubuntu").mkdir()
    (tmp_path / "ubuntu" / "vmlinuz").write_bytes(b"K" * 1000)
    (tmp_path.parent / "secret.txt").write_text("no")
    resp = client.get("/boot/files/ubuntu/vmlinuz")
    assert resp.status_code == 200 and b"".join(resp.streaming_content) == b"K" * 1000
    part = client.get("/boot/files/ubuntu/vmlinuz", HTTP_RANGE="bytes=0-9")
    assert part.status_code == 206 and b"".join(part.streaming_content) == b"K" * 10
    for bad in ("../secret.txt", "ubuntu/../../secret.txt", "ubuntu/%00", "nope"):
        assert client.get(f"/boot/files/{bad}").status_code == 404
    (tmp_path / "link").symlink_to(tmp_path.parent / "secret.txt")
    assert client.get("/boot/files/link").status_code == 404


def test_boot_files_go_through_nginx_when_accel_redirect_is_set(client, settings, tmp_path):
    settings.PUREBOOT_BOOT_ROOT = tmp_path
    (tmp_path / "ubuntu").mkdir()
    (tmp_path / "ubuntu" / "vmlinuz").write_bytes(b"K" * 1000)
    assert "X-Accel-Redirect" not in client.get("/boot/files/ubuntu/vmlinuz")
    settings.PUREBOOT_ACCEL_REDIRECT = "/protected-images/"
    for method in (client.get, client.head):
        resp = method("/boot/files/ubuntu/vmlinuz", HTTP_RANGE="bytes=0-9")
        assert resp.status_code == 200 and resp.content == b""  # nginx sends the bytes
        assert resp["X-Accel-Redirect"] == "/protected-boot/ubuntu/vmlinuz"
        assert resp["ETag"] and resp["Accept-Ranges"] == "bytes"
    settings.PUREBOOT_ACCEL_BOOT_PREFIX = "/internal/boot"
    resp = client.get("/boot/files/ubuntu/vmlinuz")
    assert resp["X-Accel-Redirect"] == "/internal/boot/ubuntu/vmlinuz"
    # Refusals stay Django's: nothing outside the boot root reaches nginx.
    assert client.get("/boot/files/../etc/passwd").status_code == 404
    assert "X-Accel-Redirect" not in client.get("/boot/files/nope")


def test_preview_shows_each_firmware_path_without_changing_anything(api, site_a):
    from tests.factories import make_user

    node = make_node(site=site_a, macs=[MAC], hostname="web01")
    node_services.perform(
        node.pk, "assign", node_services.SYSTEM, workflow=make_workflow("netboot", NETBOOT)
    )
    body = api(make_user("Admin")).get(f"/api/v1/nodes/{node.pk}/preview").json()
    assert "kernel http://testserver/boot/files/ubuntu/vmlinuz" in body["boot"]["ipxe-bios"]
    assert "PREVIEW-TOKEN" in body["boot"]["ipxe-uefi"]
    assert body["boot"]["ipxe-uefi"].rstrip().endswith("exit 1")
    assert Node.objects.get(pk=node.pk).state == "pending" and not WorkflowRun.objects.exists()
    retired = make_node("retired", site=site_a)
    assert api(make_user("Admin")).get(f"/api/v1/nodes/{retired.pk}/preview").json()["boot"] == {
        "ipxe-bios": None,
        "ipxe-uefi": None,
    }


@pytest.mark.parametrize("junk", ["", "-1", "abc", "9" * 20, "٣"])
def test_the_total_wait_survives_each_poll_and_ends_on_the_disk(client, settings, junk):
    settings.PUREBOOT_BOOT_POLL_SECONDS = 5
    settings.PUREBOOT_BOOT_WAIT_SECONDS = 20  # four rounds
    first = ipxe(client).content.decode()
    assert "set pb_round:int32 0" in first and "&round=${pb_round}" in first
    assert "waiting for an assignment" in first
    # Each re-fetch carries the rounds waited so far; the script picks up there.
    third = ipxe(client, round="3").content.decode()
    assert "set pb_round:int32 3" in third and "iseq ${pb_round} 4 && goto local" in third
    done = ipxe(client, round="4").content.decode()
    assert "no assignment, booting the local disk" in done
    assert "chain" not in done and "sanboot --no-describe --drive 0x80" in done
    # Junk is round 0, never an error.
    assert "set pb_round:int32 0" in ipxe(client, round=junk).content.decode()
