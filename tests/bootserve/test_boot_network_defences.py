"""A hostile host on the boot network cannot flood discovery or fail a node by asking.

Red team: an unauthenticated host created 10,000 "discovered" nodes in
seconds (also through pxelinux.cfg/01-<mac> requests); four requests from
anyone presenting a pending node's MAC pushed it to failed; three
simultaneous /boot/ipxe requests for one pending node gave a 500.
"""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connection
from django.test import Client as HttpClient

from bootserve import discovery, tftp_files
from nodes import services as node_services
from nodes.models import Node, NodeEvent
from tests.factories import make_node, make_workflow
from workflows.models import WorkflowRun

from .test_http import NETBOOT

MAC = "52:54:00:12:34:56"


def _mac(i: int) -> str:
    return f"52:54:01:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"


@pytest.mark.django_db
def test_a_discovery_flood_stops_at_the_cap_and_is_counted(client, settings):
    settings.PUREBOOT_DISCOVERY_MAX = 50
    settings.PUREBOOT_DISCOVERY_RATE = 0
    refused_before = discovery.refused_count()
    statuses = [
        client.get("/boot/ipxe", {"mac": _mac(i)}, REMOTE_ADDR=f"10.9.{i // 250}.{i % 250}")
        for i in range(200)
    ]
    assert Node.objects.filter(state="discovered").count() == 50
    assert [r.status_code for r in statuses[:50]] == [200] * 50
    assert {r.status_code for r in statuses[50:]} == {404}  # answered as unknown, not stored
    assert discovery.refused_count() - refused_before == 150


@pytest.mark.django_db
def test_tftp_config_requests_are_bounded_too(settings):
    settings.PUREBOOT_DISCOVERY_MAX = 0
    settings.PUREBOOT_DISCOVERY_RATE = 5
    refused_before = discovery.refused_count()
    peer = ("10.9.9.9", 2000)
    for i in range(12):
        tftp_files.resolve(f"pxelinux.cfg/01-{_mac(i).replace(':', '-')}", peer)
    assert Node.objects.count() == 5
    assert discovery.refused_count() - refused_before == 7
    # Another address on the boot network is not held back by the flooder.
    tftp_files.resolve(f"pxelinux.cfg/01-{_mac(99).replace(':', '-')}", ("10.9.9.10", 2000))
    assert Node.objects.count() == 6


@pytest.mark.django_db
def test_the_rate_is_per_source_address(client, settings):
    settings.PUREBOOT_DISCOVERY_RATE = 3
    for i in range(6):
        client.get("/boot/ipxe", {"mac": _mac(i)}, REMOTE_ADDR="10.8.0.1")
    assert Node.objects.count() == 3
    assert client.get("/boot/ipxe", {"mac": _mac(50)}, REMOTE_ADDR="10.8.0.2").status_code == 200
    assert Node.objects.count() == 4


@pytest.mark.django_db
def test_repeated_requests_of_one_boot_never_fail_a_node(client, settings):
    settings.PUREBOOT_MAX_INSTALL_ATTEMPTS = 3
    node = make_node(macs=[MAC])
    node_services.perform(
        node.pk, "assign", node_services.SYSTEM, workflow=make_workflow("netboot", NETBOOT)
    )
    bodies = [client.get("/boot/ipxe", {"mac": MAC}).content for _ in range(10)]
    node.refresh_from_db()
    assert node.state == "installing" and node.install_attempts == 1
    assert all(b"kernel " in body for body in bodies)
    assert len(set(bodies)) == 1  # one install, one token, one answer
    assert WorkflowRun.objects.filter(node=node).count() == 1


def _pending_node() -> Node:
    node = make_node(macs=[MAC])
    node_services.perform(
        node.pk, "assign", node_services.SYSTEM, workflow=make_workflow("netboot", NETBOOT)
    )
    return node


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_boots_of_one_node_start_one_install_and_get_one_answer():
    node = _pending_node()
    barrier = threading.Barrier(32)
    answers: list = []

    def boot():
        try:
            barrier.wait(10)
            resp = HttpClient().get("/boot/ipxe", {"mac": MAC})
            answers.append((resp.status_code, resp.content))
        except Exception as exc:  # noqa: BLE001 - the test reads every outcome
            answers.append((exc, b""))
        finally:
            connection.close()

    threads = [threading.Thread(target=boot) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    close_old_connections()
    assert [status for status, _ in answers] == [200] * 32, answers[:3]
    assert len({body for _, body in answers}) == 1
    node.refresh_from_db()
    assert node.state == "installing" and node.install_attempts == 1
    starts = NodeEvent.objects.filter(node=node, kind="transition", to_state="installing")
    assert starts.count() == 1
    assert WorkflowRun.objects.filter(node=node).count() == 1
