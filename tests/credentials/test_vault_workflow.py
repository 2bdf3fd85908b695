"""A workflow uses a credential kept in OpenBao: the Windows unattend carries the store's secret.

A Windows node's ``autounattend.xml``, served to the node with its install
token, encodes the local Administrator password that the ``windows_admin``
credential refers to in the store; a new value in the store is what the
next render carries, and a store that refuses makes the file a 409 naming
the store and path, not a 500.
"""

from __future__ import annotations

import base64
import re

import pytest
import yaml

from audit.models import AuditEvent
from credentials import services as credentials
from nodes import services as node_services
from tests.factories import make_node, make_windows_images, sealed
from workflows.services import save_workflow

from .conftest import STORED

MAC = "52:54:00:57:17:01"
IMAGE = "windows-22621-x86_64"

pytestmark = pytest.mark.django_db


def encoded(password: str) -> str:
    return base64.b64encode((password + "AdministratorPassword").encode("utf-16-le")).decode()


@pytest.fixture
def windows_node(vault, settings):
    settings.PUREBOOT_WINDOWS_SHARE = "\\\\pureboot.test\\pureboot-boot"
    settings.PUREBOOT_PUBLIC_URL = "http://pb.test"
    make_windows_images(IMAGE)
    credentials.create_credential(
        "user:setup",
        {
            "name": "win-admin",
            "kind": "windows_admin",
            "username": "Administrator",
            "store": "vault",
            "external_mount": "secret",
            "external_path": vault,
        },
        approval=sealed("credential.create", "credential:new:win-admin", ""),
    )
    doc = {
        "name": "windows-11-pro",
        "arch": ["x86_64"],
        "firmware": ["uefi", "bios"],
        "tasks": [
            {"type": "pxe_boot", "boot_image": IMAGE},
            {
                "type": "windows_install",
                "edition": "Windows 11 Pro",
                "admin_credential": "win-admin",
            },
        ],
    }
    workflow = save_workflow(yaml.safe_dump(doc), node_services.SYSTEM).workflow
    node = make_node(hostname="desk-17.corp.example.com", macs=[MAC], firmware="uefi")
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=workflow)
    return node


def test_the_unattend_carries_the_secret_from_the_store(windows_node, vault, openbao, api):
    client = api()
    script = client.get("/boot/ipxe", {"mac": MAC}).content.decode()
    token = re.search(r"/api/v1/install/([^/]+)/autounattend.xml", script)[1]
    url = f"/api/v1/install/{token}/autounattend.xml"

    first = client.get(url)
    assert first.status_code == 200, first.content
    assert encoded(STORED) in first.content.decode()
    event = AuditEvent.objects.filter(action="credential.reveal").latest("pk")
    assert event.actor == f"node:{windows_node.pk}"
    assert event.details["reference"] == f"secret/{vault}#password"

    # The store's value changes: the next render carries the new one.
    openbao.root().secrets.kv.v2.create_or_update_secret(
        path=vault, secret={"password": "N3w-Adm1n!"}, mount_point="secret"
    )
    second = client.get(url).content.decode()
    assert encoded("N3w-Adm1n!") in second and encoded(STORED) not in second

    # The secret gone from the store: a 409 naming store and path, never a 500.
    openbao.root().secrets.kv.v2.delete_metadata_and_all_versions(path=vault, mount_point="secret")
    gone = client.get(url)
    assert gone.status_code == 409
    body = gone.content.decode()
    assert "win-admin" in body and f"secret/{vault}" in body and "no such secret" in body
    assert openbao.root_token not in body
