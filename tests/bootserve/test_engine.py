"""The decision table, as a pure function."""

import pytest

from bootserve.engine import Client, Kind, NodeFacts, Policy, Step, decide

POLICY = Policy(max_install_attempts=3)


def facts(state, attempts=0, can_install=True, firmware="uefi"):
    return NodeFacts(1, "n1", state, "x86_64", firmware, attempts, can_install)


@pytest.mark.parametrize(
    "state,kind,step",
    [
        ("discovered", Kind.WAIT, Step.NONE),
        ("failed", Kind.WAIT, Step.NONE),
        ("pending", Kind.INSTALL, Step.START_INSTALL),
        ("reprovision", Kind.INSTALL, Step.START_INSTALL),
        ("installing", Kind.INSTALL, Step.RETRY_INSTALL),
        ("installed", Kind.LOCAL, Step.NONE),
        ("active", Kind.LOCAL, Step.NONE),
        ("deprovisioning", Kind.AGENT, Step.AGENT),
        ("migrating", Kind.AGENT, Step.AGENT),
        ("retired", Kind.IGNORE, Step.NONE),
    ],
)
def test_table(state, kind, step):
    decision = decide(facts(state), Client(macs=("52:54:00:00:00:01",)), POLICY)
    assert (decision.kind, decision.step) == (kind, step)


def test_unknown_machine_with_and_without_discovery():
    client = Client(macs=("52:54:00:00:00:01",))
    assert decide(None, client, POLICY).step == Step.REGISTER
    off = decide(None, client, Policy(discovery=False))
    assert (off.kind, off.step) == (Kind.IGNORE, Step.NONE)


def test_no_reinstall_loop_past_the_attempt_limit():
    decision = decide(facts("installing", attempts=3), Client(), POLICY)
    assert (decision.kind, decision.step) == (Kind.LOCAL, Step.FAIL)
    assert "limit" in decision.reason


def test_pending_without_a_network_boot_waits():
    assert decide(facts("pending", can_install=False), Client(), POLICY).kind == Kind.WAIT


def test_client_firmware_wins_for_local_boot_commands():
    node = facts("installed", firmware="bios")
    assert decide(node, Client(firmware="uefi"), POLICY).firmware == "uefi"
    assert decide(node, Client(), POLICY).firmware == "bios"
