"""Small helpers to build users, sites and nodes for tests."""

from __future__ import annotations

import itertools
from datetime import timedelta

import factory
from django.contrib.auth.models import Group, User
from django.utils import timezone
from guardian.shortcuts import assign_perm

from nodes.models import NetworkInterface, Node, Site
from workflows.models import BootImage, Workflow

_mac = itertools.count(1)


def next_mac() -> str:
    n = next(_mac)
    return f"52:54:00:{(n >> 16) & 0xFF:02x}:{(n >> 8) & 0xFF:02x}:{n & 0xFF:02x}"


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Site {n}")
    slug = factory.Sequence(lambda n: f"site-{n}")


_workflow_seq = itertools.count(1)

SIMPLE_WORKFLOW = """\
name: {name}
description: test workflow
tasks:
  - type: pxe_boot
    kernel: /boot/ubuntu/vmlinuz
    initrd: /boot/ubuntu/initrd
"""


def make_workflow(name: str | None = None, content: str | None = None) -> Workflow:
    """A workflow with one version, saved through the service (as the API does)."""
    from nodes.services import SYSTEM
    from workflows.services import save_workflow

    name = name or f"wf-{next(_workflow_seq)}"
    return save_workflow(content or SIMPLE_WORKFLOW.format(name=name), SYSTEM).workflow


def make_user(role: str | None = None, *, sites=(), username: str | None = None) -> User:
    """A user in ``role`` (a group made by the roles migration), granted ``sites``."""
    user = User.objects.create_user(
        username or f"{(role or 'nobody').lower()}-{User.objects.count() + 1}",
        password="test-pass-1234",
        # An established account: past the approvers' cooling-off period.
        date_joined=timezone.now() - timedelta(days=30),
    )
    if role:
        if not Group.objects.filter(name=role).exists():
            # Transactional tests flush the database, roles included.
            from django.contrib.auth.models import Permission

            from accounts.roles import sync_roles

            sync_roles(Group, Permission)
        user.groups.add(Group.objects.get(name=role))
    for site in sites:
        assign_perm("nodes.operate_site", user, site)
    return User.objects.get(pk=user.pk)  # fresh: no cached permissions


def make_node(state: str = "discovered", *, site=None, macs=None, **fields) -> Node:
    """A node forced into ``state`` (test set-up only; code uses transitions)."""
    node = Node.objects.create(site=site, **fields)
    for i, mac in enumerate(macs or [next_mac()]):
        NetworkInterface.objects.create(node=node, mac=mac, is_primary=i == 0)
    if state != "discovered":
        Node.objects.filter(pk=node.pk).update(state=state)
    return Node.objects.get(pk=node.pk)


def perform_approved(
    node_pk: int, action: str, requester: User, approver: User, reason: str = "t", **params
) -> Node:
    """A destructive action the four-eye way: one person requests, another approves."""
    from approvals import services as approvals
    from approvals.models import ApprovalRequest
    from nodes import services

    try:
        services.perform(node_pk, action, services.Actor.of(requester), reason=reason, **params)
    except services.ApprovalRequired as exc:
        filed = approvals.file(exc.proposal, requester)
        request = approvals.approve(filed.pk, approver)
    else:
        raise AssertionError(f"{action} of node {node_pk} did not ask for an approval")
    request = ApprovalRequest.objects.get(pk=request.pk)
    assert request.status == "executed", request.result
    return Node.objects.get(pk=node_pk)


def sealed(action: str, target: str, bound_to: str):
    """An approval as the approvals app seals it when it executes a request (set-up only)."""
    from pureboot import gate

    return gate.seal(0, action, target, bound_to, ("test-approver",))


def sealed_credential(action: str, pk: int):
    """A sealed approval to change or delete credential ``pk`` as it is now."""
    from django.db import transaction

    from credentials import services as credentials

    with transaction.atomic():
        return sealed(action, f"credential:{pk}", credentials.binding(pk))


def make_windows_images(name: str) -> BootImage:
    """A Windows boot image ``name`` as ``import_iso`` records it (one edition), and wimboot."""
    files = {
        role: {"name": file_name, "sha256": "0" * 64, "size": 1}
        for role, file_name in (
            ("bootmgr", "bootmgr"),
            ("bootmgr_efi", "bootx64.efi"),
            ("bcd", "BCD"),
            ("boot_sdi", "boot.sdi"),
            ("boot_wim", "boot.wim"),
        )
    }
    files["install_wim"] = {
        "name": "install.wim",
        "sha256": "0" * 64,
        "size": 1,
        "images": [{"index": 1, "name": "Windows 11 Pro"}],
    }
    BootImage.objects.create(
        name="wimboot",
        family="wimboot",
        arch="x86_64",
        files={"wimboot": {"name": "wimboot", "sha256": "0" * 64, "size": 1}},
    )
    return BootImage.objects.create(
        name=name, family="windows", version="22621", arch="x86_64", files=files
    )
