"""A Windows node end to end through the controller: its iPXE script, its files, its secrets.

A pending node with a Windows workflow network-boots: iPXE gets wimboot and
the file list; the node's own ``autounattend.xml``, ``winpeshl.ini`` and
``pureboot.cmd`` come with its token, with the local Administrator password
encoded and revealed for that node only (audited); the preview shows the
same files with placeholders; WinPE's ``disk_written`` report makes the
next boot the disk; the first-logon report makes it installed.
"""

from __future__ import annotations

import base64
import re

import pytest
import yaml
from cryptography.fernet import Fernet

from audit.models import AuditEvent
from credentials import services as credentials
from nodes import services as node_services
from nodes.models import Node
from tests.factories import make_node, make_user, make_windows_images, sealed
from workflows.models import WorkflowRun
from workflows.services import save_workflow
from workflows.unattend import check_unattend

MAC = "52:54:00:57:11:01"
IMAGE = "windows-22621-x86_64"
ADMIN_PASSWORD = "Adm1n-Pa55!"
JOIN_PASSWORD = "j0in-Pa55"

pytestmark = pytest.mark.django_db


@pytest.fixture
def windows(settings):
    settings.PUREBOOT_FERNET_KEYS = [Fernet.generate_key().decode()]
    settings.PUREBOOT_WINDOWS_SHARE = "\\\\pureboot.test\\pureboot-boot"
    settings.PUREBOOT_PUBLIC_URL = "http://pb.test"
    make_windows_images(IMAGE)
    for name, kind, user, password in (
        ("win-admin", "windows_admin", "Administrator", ADMIN_PASSWORD),
        ("corp-join", "domain_join", "CORP\\svc-join", JOIN_PASSWORD),
    ):
        credentials.create_credential(
            "user:setup",
            {"name": name, "kind": kind, "username": user, "scope": "corp.example.com"},
            {"password": password},
            approval=sealed("credential.create", f"credential:new:{name}", ""),
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
            {
                "type": "domain_join",
                "domain": "corp.example.com",
                "mode": "online",
                "credential": "corp-join",
            },
        ],
    }
    workflow = save_workflow(yaml.safe_dump(doc), node_services.SYSTEM).workflow
    node = make_node(hostname="desk-42.corp.example.com", macs=[MAC], firmware="uefi")
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=workflow)
    return node


def encoded(password: str, suffix: str) -> str:
    return base64.b64encode((password + suffix).encode("utf-16-le")).decode()


def test_a_windows_node_gets_wimboot_its_files_and_its_own_secrets(windows, api):
    client = api()
    script = client.get("/boot/ipxe", {"mac": MAC}).content.decode()
    assert "kernel http://pb.test/boot/files/wimboot/wimboot" in script
    token = re.search(r"/api/v1/install/([^/]+)/autounattend.xml", script)[1]
    names = re.findall(r"^initrd --name (\S+)", script, re.M)
    assert names == [
        "bootmgfw.efi",
        "BCD",
        "boot.sdi",
        "boot.wim",
        "winpeshl.ini",
        "pureboot.cmd",
        "autounattend.xml",
    ]
    assert Node.objects.get(pk=windows.pk).state == "installing"

    reveals = AuditEvent.objects.filter(action="credential.reveal").count()
    unattend = client.get(f"/api/v1/install/{token}/autounattend.xml")
    assert unattend.status_code == 200
    xml = unattend.content.decode()
    assert check_unattend(xml) == []
    assert encoded(ADMIN_PASSWORD, "AdministratorPassword") in xml
    assert ADMIN_PASSWORD not in xml  # encoded where Setup allows it
    assert "<ComputerName>DESK-42</ComputerName>" in xml
    assert "<JoinDomain>corp.example.com</JoinDomain>" in xml
    assert JOIN_PASSWORD in xml  # UnattendedJoin takes it in clear; Setup removes it
    assert "\\\\pureboot.test\\pureboot-boot\\windows-22621-x86_64\\install.wim" in xml
    assert "<Value>Windows 11 Pro</Value>" in xml
    revealed = AuditEvent.objects.filter(action="credential.reveal").order_by("pk")[reveals:]
    assert {e.actor for e in revealed} == {f"node:{windows.pk}"}
    assert len(revealed) == 2  # the local Administrator and the join account

    cmd = client.get(f"/api/v1/install/{token}/pureboot.cmd").content.decode()
    assert "setup.exe" in cmd and "disk_written" in cmd and f"Node {token}" in cmd
    assert "wpeinit" in client.get(f"/api/v1/install/{token}/winpeshl.ini").content.decode()
    assert client.get("/api/v1/install/not-a-token/autounattend.xml").status_code == 404
    # A name the install does not have: 404 before anything is rendered or revealed.
    count = AuditEvent.objects.filter(action="credential.reveal").count()
    assert client.get(f"/api/v1/install/{token}/unattend.xml").status_code == 404
    assert AuditEvent.objects.filter(action="credential.reveal").count() == count

    # The preview: the same files, the secrets never revealed.
    admin = make_user("Admin")
    before = AuditEvent.objects.filter(action="credential.reveal").count()
    preview = api(admin).get(f"/api/v1/nodes/{windows.pk}/preview").json()
    files = preview["files"]
    assert set(files) == {"autounattend.xml", "winpeshl.ini", "pureboot.cmd"}
    assert ADMIN_PASSWORD not in str(preview) and JOIN_PASSWORD not in str(preview)
    assert encoded(ADMIN_PASSWORD, "AdministratorPassword") not in str(preview)
    assert preview["checks"]["ok"] is True, preview["checks"]
    assert AuditEvent.objects.filter(action="credential.reveal").count() == before

    # WinPE: Setup wrote the disk; the next boots are the disk while Setup finishes.
    auth = {"HTTP_AUTHORIZATION": f"Node {token}"}
    assert (
        client.post("/api/v1/report", {"status": "disk_written"}, format="json", **auth).status_code
        == 200
    )
    again = client.get("/boot/ipxe", {"mac": MAC}).content.decode()
    assert "wimboot" not in again and "exit 1" in again
    # WinPE is done: its files, and the secrets in them, are not handed out again.
    count = AuditEvent.objects.filter(action="credential.reveal").count()
    late = client.get(f"/api/v1/install/{token}/autounattend.xml")
    assert late.status_code == 409 and b"not served again" in late.content
    assert AuditEvent.objects.filter(action="credential.reveal").count() == count
    # The first logon reports installed, then active.
    for status, state in (("installed", "installed"), ("active", "active")):
        resp = client.post("/api/v1/report", {"status": status}, format="json", **auth)
        assert resp.status_code == 200, resp.content
        assert Node.objects.get(pk=windows.pk).state == state
    assert WorkflowRun.objects.get(node=windows).status == "succeeded"
    # The install is over: its files are not served any more.
    assert client.get(f"/api/v1/install/{token}/autounattend.xml").status_code == 404
