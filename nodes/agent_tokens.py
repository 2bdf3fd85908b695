"""Tokens for the PureBoot agent: the node's own key to its lifecycle job.

An agent booted for a lifecycle job (a wipe, a migration, an inventory) has
no install run; its token names the node and the state episode it was
issued in (the state and the moment the node entered it). It is good while
the node stays in that episode and is void as soon as the node moves on, so
a token copied from one wipe can never report on the next. Nothing secret is
stored server-side: the token is signed with the project's secret key.
"""

from __future__ import annotations

from django.core import signing

from .choices import NodeState
from .models import Node

TOKEN_SALT = "pureboot.agent.token"
MAX_TOKEN_LENGTH = 512
# The states in which a machine runs the agent for a lifecycle job.
AGENT_STATES = (NodeState.DISCOVERED, NodeState.DEPROVISIONING, NodeState.MIGRATING)


class AgentTokenInvalid(Exception):
    """The token is malformed, forged, or its state episode has ended."""


def episode(node: Node) -> str:
    """The state episode a token or a job belongs to: when the node entered its state."""
    return node.state_changed_at.isoformat()


def issue(node: Node) -> str:
    """The agent token for ``node`` in its current state episode."""
    return signing.Signer(salt=TOKEN_SALT).sign_object(
        {"n": node.pk, "s": node.state, "e": episode(node)}
    )


def resolve(token: str) -> Node:
    """The node ``token`` belongs to, if its episode is still current (not locked)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise AgentTokenInvalid("no token")
    try:
        data = signing.Signer(salt=TOKEN_SALT).unsign_object(token)
    except (signing.BadSignature, ValueError):
        raise AgentTokenInvalid("bad signature") from None
    if not isinstance(data, dict) or not isinstance(data.get("n"), int):
        raise AgentTokenInvalid("malformed token")
    node = Node.objects.filter(pk=data["n"]).first()
    if node is None:
        raise AgentTokenInvalid("unknown node")
    if not still_current(node, data):
        raise AgentTokenInvalid(f"node {node.pk} is {node.state} now; this token has ended")
    return node


def still_current(node: Node, data: dict) -> bool:
    return (
        node.state in AGENT_STATES
        and data.get("s") == node.state
        and data.get("e") == episode(node)
    )


def claims(token: str) -> dict:
    """The token's signed claims (call after :func:`resolve` accepted it)."""
    return signing.Signer(salt=TOKEN_SALT).unsign_object(token)
