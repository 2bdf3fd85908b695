"""The boot decision engine: one pure function from what a machine presents to what it boots.

``decide(node, client, policy)`` looks at nothing but its arguments: the
node's facts (or None for an unknown machine), what the client presented and
asked for, and the policy. It returns a Decision; the caller
(``bootserve.services``) performs the transition the decision names and a
renderer turns it into an iPXE script, a PXELINUX or GRUB config, a TFTP
answer or a DHCP host entry. No protocol re-implements a rule.

| state                       | decision                                         |
|-----------------------------|--------------------------------------------------|
| unknown machine             | register as discovered and wait (discovery on)   |
| discovered, failed          | wait: show the node, poll, then boot the disk    |
| pending, reprovision        | install (performs start_install)                 |
| installing, disk written    | boot the local disk (the installer continues     |
|                             | from it: Windows Setup after WinPE)              |
| installing                  | the same install within one boot session (no    |
|                             | new attempt counted); a later boot: install      |
|                             | again while attempts < limit, else fail and boot |
|                             | the disk                                         |
| installed, active           | boot the local disk (Rule B)                     |
| installed, active, diskless | boot its NFS root again (it has no disk)         |
| discovered, no inventory    | agent: report the hardware once (when            |
|                             | PUREBOOT_AGENT_INVENTORY is on)                  |
| deprovisioning              | agent: wipe every disk, certify, retire          |
| migrating                   | agent: copy the disk out to the controller's     |
|                             | iSCSI LUN (source) or restore it (target)        |
| retired                     | no answer                                        |

An install is never served to a machine of another architecture: when the
client says what it is (iPXE's ``buildarch``, the ARM64 GRUB's prefix) and its
workflow is not for that, a pending machine waits with the reason and an
installing one boots its disk with the reason (it is not failed: anyone on the
boot network can send one request naming another architecture).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from nodes.choices import NodeState as S


class Kind(StrEnum):
    WAIT = "wait"
    INSTALL = "install"
    LOCAL = "local"
    AGENT = "agent"
    IGNORE = "ignore"


class Step(StrEnum):
    """What the caller must do to the node before answering."""

    NONE = "none"
    REGISTER = "register"  # create the node as discovered
    START_INSTALL = "start_install"  # pending/reprovision -> installing
    RETRY_INSTALL = "retry_install"  # installing: count one more attempt
    CONTINUE_INSTALL = "continue_install"  # installing, same boot session: no new attempt
    FAIL = "fail"  # installing -> failed (attempt limit reached)
    AGENT = "agent"  # boot the agent with the node's agent token
    NFS_ROOT = "nfs_root"  # boot the diskless node's NFS root; nothing changes


@dataclass(frozen=True)
class Client:
    """What a booting machine presented, normalised by the caller."""

    macs: tuple[str, ...] = ()
    uuid: str | None = None
    serial: str | None = None
    arch: str | None = None  # x86_64, aarch64, armhf
    firmware: str | None = None  # bios, uefi, pi


@dataclass(frozen=True)
class NodeFacts:
    """The node facts the rules need; built from one query by the caller."""

    id: int
    name: str
    state: str
    arch: str
    firmware: str
    install_attempts: int
    can_install: bool  # its pinned workflow has a boot to install from
    # The current install attempt began within the boot-session window: a
    # request now is the same boot asking again, not a new attempt.
    in_session: bool = False
    # The boot image its workflow names, when that image is not imported.
    missing_image: str = ""
    # The agent has never reported this machine's hardware.
    needs_inventory: bool = False
    # Its pinned workflow boots an NFS root (nfs_root): it has no local disk to boot.
    diskless: bool = False
    # The architectures its pinned workflow is for (empty: no workflow, or any).
    workflow_arches: tuple[str, ...] = ()
    # Its running install reported that it continues from the local disk
    # (Windows Setup after its WinPE phase): it boots the disk from now on.
    disk_written: bool = False
    # Its site, for the boot record (not a rule: decide never reads it).
    site_id: int | None = None


@dataclass(frozen=True)
class Policy:
    discovery: bool = True
    poll_seconds: int = 10
    wait_seconds: int = 600
    max_install_attempts: int = 3
    session_seconds: int = 120
    inventory: bool = False  # discovered machines boot the agent once to report hardware


@dataclass(frozen=True)
class Decision:
    kind: Kind
    step: Step
    reason: str
    firmware: str  # for the local-boot commands: bios, uefi or pi


# What the boot menus call an install boot and an agent boot: (doing, menu entry).
BOOT_WORDS = {
    Kind.INSTALL: ("installing", "Install"),
    Kind.AGENT: ("starting the PureBoot agent on", "PureBoot agent on"),
}


#: ``NodeFacts.missing_image`` of a Windows install without wimboot.
WIMBOOT = "wimboot"

#: ``NodeFacts.missing_image`` of an NFS root whose template is not imported
#: (or NFS root is off): the prefix, then the template's name.
NFS_ROOT_PREFIX = "nfs root "


def _importer(image: str) -> str:
    """The command that makes ``image``."""
    if image.startswith(NFS_ROOT_PREFIX):
        return "manage.py import_rootfs, with PUREBOOT_NFS_SERVER set"
    if image == WIMBOOT:
        return (
            "manage.py import_wimboot FILE, with wimboot from "
            "https://github.com/ipxe/wimboot/releases"
        )
    if image.startswith("pureboot-agent-"):
        return f"manage.py build_agent --arch {image.removeprefix('pureboot-agent-')}"
    return "manage.py import_iso"


def _firmware(node: NodeFacts | None, client: Client) -> str:
    return client.firmware or (node.firmware if node else None) or "bios"


def _wrong_arch(node: NodeFacts, client: Client) -> str:
    """Why the pinned workflow cannot install on what the client says it is; "" if it can."""
    if not client.arch or not node.workflow_arches or client.arch in node.workflow_arches:
        return ""
    return (
        f"its workflow is for {', '.join(node.workflow_arches)} and this machine booted "
        f"as {client.arch}"
    )


def decide(node: NodeFacts | None, client: Client, policy: Policy) -> Decision:
    """The boot decision for one request. Pure: no database, no clock, no I/O."""
    fw = _firmware(node, client)
    if node is None:
        if policy.discovery:
            return Decision(Kind.WAIT, Step.REGISTER, "unknown machine: discovered", fw)
        return Decision(Kind.IGNORE, Step.NONE, "unknown machine and discovery is off", fw)
    state = node.state
    if state == S.DISCOVERED and policy.inventory and node.needs_inventory:
        return Decision(
            Kind.AGENT, Step.AGENT, "discovered: the agent reports its hardware once", fw
        )
    if state in (S.DISCOVERED, S.FAILED):
        return Decision(Kind.WAIT, Step.NONE, f"{state}: waiting for an operator", fw)
    if state == S.INSTALLING and node.disk_written:
        # Not a new attempt: the installer said it goes on from the disk it
        # wrote (Windows Setup restarts several times); serving the install
        # again would start over.
        return Decision(
            Kind.LOCAL, Step.NONE, "installing: the installer continues from the local disk", fw
        )
    if node.missing_image and state in (S.PENDING, S.REPROVISION):
        return Decision(
            Kind.WAIT,
            Step.NONE,
            f"{state}: boot image {node.missing_image!r} is not imported "
            f"({_importer(node.missing_image)}); no install starts without it",
            fw,
        )
    if node.missing_image and state == S.INSTALLING:
        return Decision(
            Kind.LOCAL,
            Step.FAIL,
            f"installing: boot image {node.missing_image!r} is not imported any more; "
            "booting the local disk",
            fw,
        )
    wrong_arch = _wrong_arch(node, client)
    if wrong_arch and state in (S.PENDING, S.REPROVISION):
        return Decision(Kind.WAIT, Step.NONE, f"{state}: {wrong_arch}; no install starts", fw)
    if wrong_arch and state == S.INSTALLING:
        # Not failed: one request naming another architecture (which anyone on
        # the boot network can send for any MAC) must not end a running install.
        reason = f"installing: {wrong_arch}; booting the local disk"
        return Decision(Kind.LOCAL, Step.NONE, reason, fw)
    if state in (S.PENDING, S.REPROVISION):
        if not node.can_install:
            return Decision(
                Kind.WAIT, Step.NONE, f"{state}: its workflow has no network install boot", fw
            )
        return Decision(Kind.INSTALL, Step.START_INSTALL, f"{state}: starting the install", fw)
    if state == S.INSTALLING:
        if node.in_session and node.can_install:
            return Decision(
                Kind.INSTALL,
                Step.CONTINUE_INSTALL,
                f"installing: attempt {node.install_attempts} of {policy.max_install_attempts} "
                "under way",
                fw,
            )
        if node.install_attempts >= policy.max_install_attempts:
            return Decision(
                Kind.LOCAL,
                Step.FAIL,
                f"installing: {node.install_attempts} attempts reached the limit of "
                f"{policy.max_install_attempts}; booting the local disk",
                fw,
            )
        if not node.can_install:
            return Decision(Kind.LOCAL, Step.NONE, "installing without a network boot", fw)
        return Decision(
            Kind.INSTALL,
            Step.RETRY_INSTALL,
            f"installing: attempt {node.install_attempts + 1} of {policy.max_install_attempts}",
            fw,
        )
    if state in (S.INSTALLED, S.ACTIVE) and node.diskless:
        return Decision(Kind.INSTALL, Step.NFS_ROOT, f"{state}: diskless, booting its NFS root", fw)
    if state in (S.INSTALLED, S.ACTIVE):
        return Decision(Kind.LOCAL, Step.NONE, f"{state}: boot from the local disk", fw)
    if state == S.DEPROVISIONING:
        return Decision(
            Kind.AGENT, Step.AGENT, "deprovisioning: the agent wipes and certifies its disks", fw
        )
    if state == S.MIGRATING:
        return Decision(
            Kind.AGENT,
            Step.AGENT,
            "migrating: the agent copies the disk out (source) or restores the copy (target)",
            fw,
        )
    return Decision(Kind.IGNORE, Step.NONE, f"{state}: no answer", fw)
