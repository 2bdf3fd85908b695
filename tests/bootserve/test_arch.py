"""A machine's architecture: recorded from what it boots as, and an install of another never served.

iPXE says its ``buildarch``; the ARM64 GRUB (``grubnetaa64.efi``) asks for its
configs under ``/grub-arm64``. A discovered machine's node records what it
booted as; an assigned one keeps its record, and a workflow for another
architecture is refused at boot with the reason on the machine's screen.
"""

from __future__ import annotations

import re

import pytest
from django.core.cache import cache

from bootserve import grub
from bootserve.engine import Client, Kind, NodeFacts, Policy, Step, decide
from bootserve.tftp_files import resolve
from nodes import services as node_services
from nodes.models import Node, NodeEvent
from tests.factories import make_node, make_workflow
from workflows.models import WorkflowRun

MAC = "52:54:00:a6:40:01"
DASHED = MAC.replace(":", "-")
X86_ONLY = """\
name: x86-only
arch: [x86_64]
tasks:
  - type: pxe_boot
    kernel: /k/vmlinuz
    initrd: /k/initrd
"""


def facts(state: str, arches: tuple[str, ...] = ("x86_64",), **kw) -> NodeFacts:
    return NodeFacts(
        id=1,
        name="n1",
        state=state,
        arch="x86_64",
        firmware="uefi",
        install_attempts=kw.pop("attempts", 1),
        can_install=True,
        workflow_arches=arches,
        **kw,
    )


@pytest.mark.parametrize(
    "state,kind,step",
    [
        ("pending", Kind.WAIT, Step.NONE),
        ("reprovision", Kind.WAIT, Step.NONE),
        ("installing", Kind.LOCAL, Step.NONE),
    ],
)
def test_an_install_for_another_architecture_is_never_served(state, kind, step):
    decision = decide(facts(state), Client(arch="aarch64"), Policy())
    assert (decision.kind, decision.step) == (kind, step)
    assert "its workflow is for x86_64 and this machine booted as aarch64" in decision.reason


@pytest.mark.parametrize("client_arch", [None, "x86_64"])
def test_a_matching_or_unknown_architecture_installs(client_arch):
    decision = decide(facts("pending"), Client(arch=client_arch), Policy())
    assert (decision.kind, decision.step) == (Kind.INSTALL, Step.START_INSTALL)
    # A workflow that names no architecture is for any.
    anything = decide(facts("pending", arches=()), Client(arch="aarch64"), Policy())
    assert anything.kind == Kind.INSTALL


def test_the_arm64_grub_prefix_names_its_architecture():
    assert grub.config_arch(f"grub-arm64/grub.cfg-01-{DASHED}") == "aarch64"
    assert grub.config_arch(f"/grub-arm64/grub.cfg-{MAC}") == "aarch64"
    assert grub.config_arch(f"grub/grub.cfg-01-{DASHED}") is None
    assert grub.parse_config_name(f"grub-arm64/grub.cfg-01-{DASHED}") == ("mac", MAC)
    assert grub.parse_config_name("grub-arm64/grub.cfg") == ("default", None)
    assert grub.parse_config_name("grub-arm64x/grub.cfg") is None
    assert grub.config_names(MAC, grub.ARM64_PREFIX)[0] == f"grub-arm64/grub.cfg-01-{DASHED}"


@pytest.mark.django_db
def test_an_unknown_arm64_uefi_machine_is_discovered_as_aarch64(settings, tmp_path):
    settings.PUREBOOT_BOOT_ROOT = tmp_path
    cfg = resolve(f"grub-arm64/grub.cfg-01-{DASHED}", ("10.99.0.70", 2000)).decode()
    assert "waiting for an assignment" in cfg
    node = Node.objects.get(interfaces__mac=MAC)
    assert (node.state, node.arch, node.firmware) == ("discovered", "aarch64", "uefi")


@pytest.mark.django_db
def test_a_discovered_node_records_the_architecture_it_boots_as(client):
    cache.clear()
    node = make_node(macs=[MAC])  # registered (e.g. by the API) as x86_64
    assert node.arch == "x86_64"
    assert client.get("/boot/ipxe", {"mac": MAC, "arch": "arm64"}).status_code == 200
    node.refresh_from_db()
    assert node.arch == "aarch64"
    event = NodeEvent.objects.filter(node=node).latest("pk")
    assert event.actor == "system" and "arch" in event.message
    # A host flipping it back and forth: one record an hour, not one per request.
    events = NodeEvent.objects.filter(node=node).count()
    for arch in ("x86_64", "arm64") * 3:
        assert client.get("/boot/ipxe", {"mac": MAC, "arch": arch}).status_code == 200
    node.refresh_from_db()
    assert node.arch == "aarch64" and NodeEvent.objects.filter(node=node).count() == events
    cache.clear()  # an hour later
    assert client.get("/boot/ipxe", {"mac": MAC, "arch": "x86_64"}).status_code == 200
    node.refresh_from_db()
    assert node.arch == "x86_64"


@pytest.mark.django_db
def test_an_assigned_node_keeps_its_record_and_refuses_the_foreign_install(client):
    node = make_node(macs=[MAC])
    node_services.perform(
        node.pk, "assign", node_services.SYSTEM, workflow=make_workflow("x86-only", X86_ONLY)
    )
    for _ in range(2):  # the Django path, then the fast path: the same answer
        script = client.get("/boot/ipxe", {"mac": MAC, "arch": "arm64"}).content.decode()
        assert "its workflow is for x86_64 and this machine booted as aarch64" in script
        assert "kernel " not in script
    node.refresh_from_db()
    assert (node.state, node.arch) == ("pending", "x86_64")
    assert not WorkflowRun.objects.filter(node=node).exists()
    # The same machine as x86 installs.
    script = client.get("/boot/ipxe", {"mac": MAC, "arch": "x86_64"}).content.decode()
    assert "kernel http" in script
    assert Node.objects.get(pk=node.pk).state == "installing"


@pytest.mark.django_db
def test_an_installing_node_asked_for_as_another_architecture_boots_its_disk(settings, tmp_path):
    """One request naming another architecture (anyone can send it) does not fail the install."""
    settings.PUREBOOT_BOOT_ROOT = tmp_path
    node = make_node(macs=[MAC])
    node_services.perform(
        node.pk, "assign", node_services.SYSTEM, workflow=make_workflow("x86-only", X86_ONLY)
    )
    assert b"linux " in resolve(f"grub/grub.cfg-01-{DASHED}", ("10.99.0.71", 1))
    assert Node.objects.get(pk=node.pk).state == "installing"
    cfg = resolve(f"grub-arm64/grub.cfg-01-{DASHED}", ("10.99.0.71", 1)).decode()
    assert not re.search(r"^\s*linux\s", cfg, re.M)
    assert "this machine booted as aarch64" in cfg and "chainloader" in cfg
    node.refresh_from_db()
    assert node.state == "installing" and node.arch == "x86_64"
    # The x86 machine's own next request still gets its install.
    assert b"linux " in resolve(f"grub/grub.cfg-01-{DASHED}", ("10.99.0.71", 1))


@pytest.mark.django_db
def test_a_failed_or_assigned_node_keeps_its_recorded_architecture(client):
    cache.clear()
    node = make_node("failed", macs=[MAC])
    assert client.get("/boot/ipxe", {"mac": MAC, "arch": "arm64"}).status_code == 200
    node.refresh_from_db()
    assert node.arch == "x86_64"


@pytest.mark.django_db
def test_arm64_http_boot_gets_its_grub_or_a_fast_404_once_installed(client, settings, tmp_path):
    settings.PUREBOOT_BOOT_ROOT = tmp_path
    (tmp_path / "grubnetaa64.efi").write_bytes(b"MZ arm64 grub")
    url = "/boot/http/grubnetaa64.efi"
    served = client.get(url, {"mac": MAC})  # an unknown machine: the file
    assert b"".join(served.streaming_content) == b"MZ arm64 grub"
    make_node("installed", macs=[MAC], arch="aarch64", firmware="uefi")
    gone = client.head(url, {"mac": MAC})
    assert gone.status_code == 404 and gone["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_after_an_http_boot_the_arm64_grub_gets_its_modules_and_configs_over_http(
    client, settings, tmp_path
):
    """UEFI HTTP Boot makes the controller GRUB's root: /grub-arm64/ answers as TFTP does."""
    settings.PUREBOOT_BOOT_ROOT = tmp_path
    module = tmp_path / "grub-arm64" / "arm64-efi" / "normal.mod"
    module.parent.mkdir(parents=True)
    module.write_bytes(b"\x7fELF normal")
    got = client.get("/grub-arm64/arm64-efi/normal.mod")
    assert got.status_code == 200 and b"".join(got.streaming_content) == b"\x7fELF normal"
    cfg = client.get(f"/grub-arm64/grub.cfg-01-{DASHED}", REMOTE_ADDR="10.99.0.80")
    assert cfg.status_code == 200 and cfg["Content-Type"] == "text/plain; charset=utf-8"
    assert b"waiting for an assignment" in cfg.content
    node = Node.objects.get(interfaces__mac=MAC)
    assert (node.state, node.arch, node.firmware) == ("discovered", "aarch64", "uefi")
    default = client.get("/grub-arm64/grub.cfg")
    assert b"${net_default_mac}" in default.content
    # Over HTTP GRUB asks no per-MAC name itself: the default asks with colons.
    again = client.get(f"/grub-arm64/grub.cfg-{MAC}", REMOTE_ADDR="10.99.0.80")
    assert again.status_code == 200 and b"waiting for an assignment" in again.content
    for bad in ("../secret", "arm64-efi/../../x", "missing.mod", "grub.cfg-01-zz"):
        assert client.get(f"/grub-arm64/{bad}").status_code == 404, bad
    assert client.post("/grub-arm64/grub.cfg").status_code == 405
