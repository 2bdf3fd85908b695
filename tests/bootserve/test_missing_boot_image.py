"""A workflow's boot image removed later: its nodes say why at once, never loop.

Red team: a workflow naming a boot image that was never imported sent the node
to installing and then looped until its attempts ran out.
"""

from __future__ import annotations

import pytest

from nodes import services as node_services
from nodes.models import Node, NodeEvent
from tests.factories import make_node, make_workflow
from workflows.models import BootImage

pytestmark = pytest.mark.django_db
MAC = "52:54:00:12:34:57"
DOC = "name: netimage\ntasks:\n  - type: pxe_boot\n    boot_image: ubuntu-24.04\n"


@pytest.fixture
def node():
    BootImage.objects.create(
        name="ubuntu-24.04",
        family="ubuntu",
        arch="x86_64",
        files={"kernel": {"name": "vmlinuz"}, "initrd": {"name": "initrd"}},
    )
    node = make_node(macs=[MAC])
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=make_workflow("n", DOC))
    return node


def test_a_pending_node_waits_naming_the_missing_image_and_starts_nothing(client, node):
    BootImage.objects.all().delete()
    for _ in range(5):
        body = client.get("/boot/ipxe", {"mac": MAC}).content.decode()
    assert "ubuntu-24.04" in body and "not imported" in body
    fresh = Node.objects.get(pk=node.pk)
    assert fresh.state == "pending" and fresh.install_attempts == 0


def test_an_installing_node_fails_at_once_with_the_reason(client, node):
    assert b"kernel " in client.get("/boot/ipxe", {"mac": MAC}).content  # the install starts
    BootImage.objects.all().delete()
    client.get("/boot/ipxe", {"mac": MAC})
    fresh = Node.objects.get(pk=node.pk)
    assert fresh.state == "failed" and fresh.install_attempts == 1
    event = NodeEvent.objects.filter(node=node, to_state="failed").get()
    assert "boot image 'ubuntu-24.04' is not imported" in event.message
