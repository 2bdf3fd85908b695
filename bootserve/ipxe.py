"""iPXE scripts for each boot decision.

Every script falls through to the next boot device when something fails
(Rule D): a failed fetch or a failed boot ends in the local-disk commands,
and a controller that is down never leaves a machine stuck.
"""

from __future__ import annotations

from .engine import BOOT_WORDS, Decision, Kind
from .install import InstallBoot

HEADER = "#!ipxe\n"
NO_ASSIGNMENT = "no assignment, booting the local disk"


def local_boot(firmware: str) -> str:
    """Rule B: hand over to the local disk. BIOS: sanboot the first disk; UEFI: exit 1.

    On UEFI, ``exit 1`` returns to the firmware, which boots the next entry
    (the disk); ``sanboot`` does not work there and ``exit 0`` lands in setup.
    """
    if firmware == "uefi":
        return "exit 1\n"
    return "sanboot --no-describe --drive 0x80 || exit 1\n"


def _quote(text: str) -> str:
    # iPXE expands ${...}; nothing we print may be read as a setting.
    return text.replace("$", "").replace("\n", " ")


def _wimboot(firmware: str, name: str, install: InstallBoot, poll_url: str, local: str) -> str:
    """Windows Setup: wimboot with the boot files this firmware needs and the node's own files.

    A boot file that cannot be fetched ends in the local disk. One of the
    node's own files that is not ready yet (its offline domain join is still
    being provisioned: 409) is retried by fetching this script again after a
    pause, within the same boot session.
    """
    lines = [f"{HEADER}echo PureBoot: installing {name} (Windows Setup through wimboot)\n"]
    lines.append(f"kernel {install.kernel} || goto local\n")
    for file in install.wimboot_files:
        if file.firmware and file.firmware != firmware:
            continue
        failed = "retry" if file.per_node else "local"
        lines.append(f"initrd --name {file.name} {file.url} {file.name} || goto {failed}\n")
    lines.append(
        "boot || goto local\n"
        ":retry\n"
        "echo PureBoot: this node's Windows Setup files are not ready yet; retrying in 15 s\n"
        "imgfree\n"
        "sleep 15\n"
        f"chain --replace --autofree {poll_url} || goto local\n"
        ":local\n"
        "echo PureBoot: the install boot failed; booting the local disk\n"
        f"{local}"
    )
    return "".join(lines)


def render(
    decision: Decision,
    *,
    node_name: str,
    state: str,
    poll_url: str,
    poll_seconds: int,
    wait_seconds: int,
    install: InstallBoot | None = None,
    waited_rounds: int = 0,
) -> str:
    """The iPXE script for ``decision``. IGNORE has no script (the caller sends 404).

    A waiting machine re-fetches its script every ``poll_seconds``; the poll
    URL carries the rounds it has waited (``round=``), so the total wait
    survives the re-fetch and ends in the local disk after ``wait_seconds``.
    """
    local = local_boot(decision.firmware)
    name = _quote(node_name)
    if decision.kind == Kind.LOCAL:
        # Installed and active machines need no why; any other state does.
        why = (
            ""
            if state in ("installed", "active")
            else f"echo PureBoot: {_quote(decision.reason)}\n"
        )
        return f"{HEADER}echo PureBoot: {name} is {state}; booting the local disk\n{why}{local}"
    if decision.kind == Kind.AGENT and install is None:
        return f"{HEADER}echo PureBoot: {_quote(decision.reason)}\n{local}"
    if decision.kind == Kind.INSTALL and install is not None and install.wimboot_files:
        return _wimboot(decision.firmware, name, install, poll_url, local)
    if decision.kind in (Kind.INSTALL, Kind.AGENT) and install is not None:
        doing = BOOT_WORDS[decision.kind][0]
        return (
            f"{HEADER}echo PureBoot: {doing} {name}\n"
            f"kernel {install.kernel} initrd=initrd {_quote(install.cmdline)} || goto local\n"
            f"initrd --name initrd {install.initrd} || goto local\n"
            "boot || goto local\n"
            ":local\n"
            f"echo PureBoot: the {'install' if decision.kind == Kind.INSTALL else 'agent'} "
            "boot failed; booting the local disk\n"
            f"{local}"
        )
    rounds = max(wait_seconds // max(poll_seconds, 1), 1)
    if waited_rounds >= rounds:
        return f"{HEADER}echo PureBoot: {name} is {state}; {NO_ASSIGNMENT}\n{local}"
    header = (
        f"{HEADER}echo PureBoot: {name} is {state}; waiting for an assignment\n"
        if waited_rounds == 0
        else HEADER
    )
    if waited_rounds == 0 and state not in ("discovered", "failed"):
        # Assigned, yet waiting: say why (a workflow with no network boot, a
        # boot image that is not imported).
        header += f"echo PureBoot: {_quote(decision.reason)}\n"
    return (
        f"{header}"
        f"set pb_round:int32 {max(waited_rounds, 0)}\n"
        ":poll\n"
        f"sleep {poll_seconds}\n"
        "inc pb_round\n"
        f"iseq ${{pb_round}} {rounds} && goto local ||\n"
        f"chain --replace --autofree {poll_url} || goto poll\n"
        ":local\n"
        f"echo PureBoot: {name} is {state}; {NO_ASSIGNMENT}\n"
        f"{local}"
    )
