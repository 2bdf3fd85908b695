"""A VM's lines in its node's history (the operator's timeline)."""

from __future__ import annotations

from typing import Any

from nodes.choices import EventKind
from nodes.models import NodeEvent

from .models import VirtualMachine


def node_note(
    vm: VirtualMachine | None, message: str, *, actor: str = "system", **details: Any
) -> None:
    """Add ``message`` to the history of ``vm``'s node, if it has one, as ``actor``
    (``user:<name>`` for what a person asked, ``system`` for what PureBoot saw)."""
    if vm is None or vm.node_id is None:
        return
    NodeEvent.objects.create(
        node_id=vm.node_id,
        kind=EventKind.HYPERVISOR,
        actor=actor[:150],
        message=message[:2000],
        details={"hypervisor": vm.hypervisor_id, "vm": vm.pk, **details},
    )
