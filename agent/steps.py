"""Pieces every agent job shares: its steps, the disks it names, who asked for it."""

from __future__ import annotations

from typing import Any

from approvals.models import ApprovalRequest
from nodes.choices import EventKind, NodeState
from nodes.models import Node, NodeEvent

from .choices import StepStatus


class JobError(Exception):
    """A report the job cannot take; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 409, code: str = "conflict") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def new_step(name: str, action: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "action": action,
        "params": params or {},
        "status": StepStatus.PENDING,
        "started_at": None,
        "ended_at": None,
        "attempts": 0,
        "detail": "",
    }


def disk_words(disk: dict[str, Any]) -> dict[str, Any]:
    return {k: disk.get(k) for k in ("name", "path", "model", "serial", "size", "transport")}


def wipe_request(node: Node, into=(NodeState.DEPROVISIONING,)) -> dict[str, Any]:
    """Who asked for this wipe, who approved it, and how (from the history of the
    transition into ``into``: deprovisioning, or the assignment whose workflow wipes)."""
    event = (
        NodeEvent.objects.filter(node=node, kind=EventKind.TRANSITION, to_state__in=into)
        .order_by("-id")
        .first()
    )
    details = (event.details if event else None) or {}
    request: dict[str, Any] = {
        "after": details.get("after", "retired"),
        "category": details.get("category", "best"),
        "transition_by": event.actor if event else "",
        "approval_request": details.get("approval"),
        "approved_by": details.get("approvers", []),
        "requested_by": event.actor if event else "",
        "reason": event.message if event else "",
    }
    if details.get("approval"):
        approval = (
            ApprovalRequest.objects.select_related("requested_by")
            .filter(pk=details["approval"])
            .first()
        )
        if approval is not None:
            who = approval.requested_by
            request["requested_by"] = f"user:{who.get_username()}" if who else ""
            request["reason"] = approval.reason
    return request
