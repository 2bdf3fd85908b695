"""Answering a boot request: find the node, decide, perform the step, keep it cheap.

The boot path is the hottest path in PureBoot: a machine that waits polls
every few seconds. A request costs one query to find the node (with its pinned
workflow version), an UPDATE of ``last_seen_at`` when that is older than
PUREBOOT_LAST_SEEN_SECONDS, and nothing else unless the node's state changes.
History (NodeEvent) is written only on changes. The polls that change nothing
are answered before Django's middleware by ``bootserve.fastpath`` with the
same rules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from nodes import agent_tokens
from nodes import migration as node_migration
from nodes import services as node_services
from nodes.choices import Arch, Firmware, NodeState
from nodes.models import Node, is_pi_with_serial
from workflows import services as workflow_services
from workflows.choices import RunStatus
from workflows.models import BootImage, RootFilesystem, WorkflowRun

from . import discovery, nfsroot, records
from .engine import (
    NFS_ROOT_PREFIX,
    WIMBOOT,
    Client,
    Decision,
    Kind,
    NodeFacts,
    Policy,
    Step,
    decide,
)
from .install import (
    WINDOWS_FAMILY,
    InstallBoot,
    agent_boot,
    agent_image,
    boot_task,
    is_diskless_task,
    node_install_boot,
    wimboot_image,
)
from .queries import workflow_arches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BootAnswer:
    decision: Decision
    node: Node | None
    install: InstallBoot | None = None


def policy() -> Policy:
    return Policy(
        discovery=settings.PUREBOOT_DISCOVERY,
        poll_seconds=settings.PUREBOOT_BOOT_POLL_SECONDS,
        wait_seconds=settings.PUREBOOT_BOOT_WAIT_SECONDS,
        max_install_attempts=settings.PUREBOOT_MAX_INSTALL_ATTEMPTS,
        session_seconds=settings.PUREBOOT_BOOT_SESSION_SECONDS,
        inventory=settings.PUREBOOT_AGENT_INVENTORY,
    )


def find_node(client: Client) -> Node | None:
    """The node matching any presented identifier (MAC, SMBIOS UUID, Pi serial)."""
    match = Q()
    if client.macs:
        match |= Q(interfaces__mac__in=client.macs)
    if client.uuid:
        match |= Q(system_uuid=client.uuid)
    if client.serial:
        match |= Q(serial=client.serial, firmware=Firmware.PI)
    if not match:
        return None
    return (
        Node.objects.filter(match)
        .select_related("workflow_version__workflow")
        .order_by("pk")
        .first()
    )


def _missing_image(node: Node) -> str:
    """The boot image the node's pinned workflow boots from, if it is not imported."""
    task = boot_task(node.workflow_version) if node.workflow_version_id else None
    if task is not None and task["type"] == "image_deploy":
        # The agent deploys the image: its boot image is the one that must exist.
        return "" if agent_image(node.arch) else f"pureboot-agent-{node.arch}"
    if task is not None and task["type"] == "nfs_root":
        # Its template must be there, and NFS root switched on, or nothing boots.
        root = task.get("root", "")
        there = RootFilesystem.objects.filter(name=root).exists()
        return "" if there and settings.PUREBOOT_NFS_SERVER else f"{NFS_ROOT_PREFIX}{root}"
    image = (task or {}).get("boot_image")
    if not image:
        return ""
    family = BootImage.objects.filter(name=image).values_list("family", flat=True).first()
    if family is None:
        return image
    if family == WINDOWS_FAMILY and wimboot_image() is None:
        return WIMBOOT  # Windows Setup boots through wimboot, which the operator supplies
    return ""


def _disk_written(node: Node) -> bool:
    """Whether the node's running install said it continues from the local disk."""
    return WorkflowRun.objects.filter(
        node=node, status=RunStatus.RUNNING, disk_written_at__isnull=False
    ).exists()


def facts(node: Node) -> NodeFacts:
    window = timedelta(seconds=settings.PUREBOOT_BOOT_SESSION_SECONDS)
    return NodeFacts(
        id=node.pk,
        name=str(node),
        state=node.state,
        arch=node.arch,
        firmware=node.firmware,
        install_attempts=node.install_attempts,
        can_install=boot_task(node.workflow_version) is not None,
        in_session=node.install_attempt_at is not None
        and node.install_attempt_at > timezone.now() - window,
        missing_image=_missing_image(node)
        if node.state in (NodeState.PENDING, NodeState.REPROVISION, NodeState.INSTALLING)
        else "",
        needs_inventory=node.inventory_at is None,
        workflow_arches=workflow_arches(node.workflow_version.definition)
        if node.workflow_version_id
        else (),
        diskless=is_diskless(node),
        disk_written=node.state == NodeState.INSTALLING and _disk_written(node),
        site_id=node.site_id,
    )


def is_diskless(node: Node) -> bool:
    """Whether the node's pinned workflow boots an NFS root: it has no disk to boot."""
    return is_diskless_task(boot_task(node.workflow_version))


def peek(client: Client) -> tuple[Decision, Node | None]:
    """What ``client`` would be told now, and its node; acting on nothing: one query, no step.

    For first stages that only need to know whether to boot at all (UEFI HTTP
    Boot): the iPXE request that follows registers, installs and records.
    """
    node = find_node(client)
    return decide(facts(node) if node else None, client, policy()), node


def handle_boot(
    client: Client,
    *,
    base_url: str,
    source: str = "",
    protocol: str = "",
    asked: str = "",
    via: str = "",
) -> BootAnswer:
    """Decide what ``client`` boots and perform the lifecycle step that implies.

    A step that changes the node is decided again under the node's row lock,
    so concurrent requests of one machine see each other's work: one starts
    the install, the others get the same install, and none fails on a
    transition another already made. ``source`` is the requesting address
    (discovery is bounded per source, ``bootserve.discovery``).

    With ``protocol``, the decision is recorded (``records.record_decision``:
    ``asked`` is what the machine asked for, ``via`` what answers it, e.g.
    "iPXE script") after the step, outside its transaction.
    """
    answer = _handle_boot(client, base_url, source)
    if protocol:
        records.record_decision(
            protocol,
            answer.decision,
            answer.node,
            address=source,
            asked=asked,
            via=via,
            mac=client.macs[0] if client.macs else "",
        )
    return answer


def _handle_boot(client: Client, base_url: str, source: str) -> BootAnswer:
    node = find_node(client)
    decision = decide(facts(node) if node else None, client, policy())
    now = timezone.now()
    if decision.step == Step.REGISTER:
        if not discovery.admit(source):
            refused = Decision(Kind.IGNORE, Step.NONE, discovery.REFUSED, decision.firmware)
            return BootAnswer(refused, None)
        node = _register(client)
        return BootAnswer(decision, node)
    if node is None:
        return BootAnswer(decision, None)
    if seen_long_ago(node.last_seen_at, now):
        Node.objects.filter(pk=node.pk).update(last_seen_at=now)
    node = record_arch(node, client)
    if decision.step == Step.NONE:
        return BootAnswer(decision, node)
    if decision.step == Step.NFS_ROOT:
        return _nfs_root_answer(decision, node, base_url)  # changes nothing: no row lock
    with transaction.atomic():
        node = (
            Node.objects.select_for_update(of=("self",))
            .select_related("workflow_version__workflow")
            .get(pk=node.pk)
        )
        decision = decide(facts(node), client, policy())  # again, under the lock
        return _perform(decision, node, base_url)


#: The state in which the architecture a machine boots as is recorded on its
#: node: before anyone relies on it. Later, a mismatch only refuses the install
#: (``engine``), so a host spoofing a MAC cannot rewrite an assigned node.
ARCH_RECORDED_STATES = frozenset({NodeState.DISCOVERED})


ARCH_RECORD_SECONDS = 3600


def record_arch(node: Node, client: Client) -> Node:
    """Record the architecture ``client`` booted as on its discovered node.

    At most once an hour per node: anyone on the boot network can present a
    MAC, and flipping the architecture must not flood the audit trail.
    """
    if not client.arch or client.arch == node.arch or node.state not in ARCH_RECORDED_STATES:
        return node
    if not cache.add(f"pureboot:arch-recorded:{node.pk}", 1, timeout=ARCH_RECORD_SECONDS):
        return node
    try:
        with transaction.atomic():
            # The state again under the row lock: an assign racing this request wins.
            locked = Node.objects.select_for_update().get(pk=node.pk)
            if locked.state not in ARCH_RECORDED_STATES:
                return node
            node_services.update_node(node.pk, node_services.SYSTEM, {"arch": client.arch})
    except ValidationError as exc:
        log.warning("boot: not recording arch %s for node %s: %s", client.arch, node.pk, exc)
        return node
    node.arch = client.arch
    return node


def _perform(decision: Decision, node: Node, base_url: str) -> BootAnswer:
    """Do the step ``decision`` names to ``node`` (locked by the caller)."""
    if decision.step == Step.AGENT:
        if node.state == NodeState.MIGRATING and node_migration.running(node.pk) is None:
            # Marked migrating before migration was built: nothing for the agent to do.
            stray = Decision(
                Kind.LOCAL,
                Step.NONE,
                "migrating, but no migration names this machine (cancel_migration ends it); "
                "booting the local disk",
                decision.firmware,
            )
            return BootAnswer(stray, node)
        boot = agent_boot(node, token=agent_tokens.issue(node), base_url=base_url)
        if boot is None:
            missing = Decision(
                Kind.LOCAL,
                Step.NONE,
                f"{node.state}: no PureBoot agent image for {node.arch} is imported "
                f"(manage.py build_agent --arch {node.arch}); booting the local disk",
                decision.firmware,
            )
            return BootAnswer(missing, node)
        return BootAnswer(decision, node, boot)
    if decision.step == Step.START_INSTALL:
        node, run, token = workflow_services.start_install(node.pk)
        return _install_answer(decision, node, token, base_url)
    if decision.step in (Step.RETRY_INSTALL, Step.CONTINUE_INSTALL):
        if decision.step == Step.RETRY_INSTALL:  # a new boot: one more attempt
            Node.objects.filter(pk=node.pk).update(
                install_attempts=node.install_attempts + 1, install_attempt_at=timezone.now()
            )
        run = WorkflowRun.objects.filter(node=node, status=RunStatus.RUNNING).first()
        if run is None:  # installing without a run (e.g. set by hand): nothing to serve
            return BootAnswer(decision, node)
        return _install_answer(decision, node, workflow_services.issue_token(run), base_url)
    if decision.step == Step.FAIL:
        node = node_services.perform(node.pk, "fail", node_services.SYSTEM, reason=decision.reason)
    return BootAnswer(decision, node)


def _nfs_root_answer(decision: Decision, node: Node, base_url: str) -> BootAnswer:
    """An installed or active diskless node boots its NFS root again; nothing changes."""
    boot = node_install_boot(node, token=nfsroot.first_boot_token(node), base_url=base_url)
    if boot is None:
        missing = Decision(
            Kind.WAIT,
            Step.NONE,
            f"{node.state}: diskless, but its NFS root cannot be booted (is its template "
            "imported and PUREBOOT_NFS_SERVER set?)",
            decision.firmware,
        )
        return BootAnswer(missing, node)
    return BootAnswer(decision, node, boot)


def seen_long_ago(last_seen_at, now) -> bool:
    """Whether a boot request should refresh ``last_seen_at`` (PUREBOOT_LAST_SEEN_SECONDS)."""
    window = timedelta(seconds=settings.PUREBOOT_LAST_SEEN_SECONDS)
    return last_seen_at is None or last_seen_at < now - window


def running_install(node: Node, *, base_url: str) -> InstallBoot | None:
    """The install boot of the install ``node`` has under way, or None. Changes nothing.

    For clients that fetch one boot in several requests (a Raspberry Pi): the
    boot request started or retried the install; the later requests of the
    same boot are answered with it, token included.
    """
    if node.workflow_version is None:
        return None
    if node.state in (NodeState.INSTALLED, NodeState.ACTIVE) and is_diskless(node):
        # A diskless node's every boot is its NFS root (the engine's NFS_ROOT step).
        return node_install_boot(node, token=nfsroot.first_boot_token(node), base_url=base_url)
    if node.state != NodeState.INSTALLING:
        return None
    run = WorkflowRun.objects.filter(node=node, status=RunStatus.RUNNING).first()
    if run is None:
        return None
    return node_install_boot(node, token=workflow_services.issue_token(run), base_url=base_url)


def _install_answer(decision: Decision, node: Node, token: str, base_url: str) -> BootAnswer:
    boot = node_install_boot(node, token=token, base_url=base_url)
    if boot is None:
        return BootAnswer(
            Decision(Kind.WAIT, Step.NONE, "no install boot", decision.firmware), node
        )
    return BootAnswer(decision, node, boot)


def _register(client: Client) -> Node | None:
    """Record an unknown machine as discovered, with everything it presented."""
    fields = {
        "arch": client.arch or Arch.X86_64,
        "firmware": client.firmware or Firmware.BIOS,
        "system_uuid": client.uuid,
        "serial": client.serial or "",
    }
    if fields["firmware"] == Firmware.PI and fields["arch"] == Arch.X86_64:
        fields["arch"] = Arch.AARCH64
    interfaces = [{"mac": mac} for mac in client.macs]
    if not interfaces and not is_pi_with_serial(fields["firmware"], fields["serial"]):
        return None  # nothing to recognise it by next time (a Pi has its serial)
    try:
        with transaction.atomic():
            return node_services.create_node(node_services.SYSTEM, fields, interfaces)
    except (IntegrityError, ValidationError) as exc:
        # Two requests of one machine at once: the other registered it.
        log.info("boot: not registering %s: %s", client.macs or client.serial, exc)
        return find_node(client)
