"""The lifecycle diagram, drawn from the state machine's own declaration.

The states are ``Node.state``'s choices and the arrows are django-fsm's
transitions on that field (``get_all_transitions``), one arrow per source and
target naming every action that makes that move, so the picture follows the
code. Python computes the geometry; the template ``dashboard/lifecycle.svg``
draws it with the count of nodes in each state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from nodes.admin import STATE_COLOURS
from nodes.choices import NodeState
from nodes.models import Node

BOX_W, BOX_H = 112, 42
# The states sit on an ellipse in their declared order (the lifecycle's own
# order: discovered ... failed), so neighbours in the lifecycle are neighbours
# on the page and every arrow is a short curve bowed towards the middle.
RX, RY = 400, 150
MARGIN = 12
WIDTH = 2 * (RX + MARGIN) + BOX_W
HEIGHT = 2 * (RY + MARGIN) + BOX_H


@dataclass(frozen=True)
class Box:
    state: str
    label: str
    x: int
    y: int

    @property
    def cx(self) -> int:
        return self.x + BOX_W // 2

    @property
    def cy(self) -> int:
        return self.y + BOX_H // 2


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str
    actions: tuple[str, ...]
    path: str


@dataclass(frozen=True)
class Layout:
    boxes: tuple[Box, ...]
    arrows: tuple[Arrow, ...]
    width: int
    height: int


def transitions() -> list[tuple[str, str, str]]:
    """(action, source, target) for every declared transition of ``Node.state``."""
    field = Node._meta.get_field("state")
    return [
        (t.name, str(t.source), str(t.target))
        for t in field.get_all_transitions(Node)
        if t.target is not None
    ]


def _edge_point(box: Box, toward: tuple[float, float]) -> tuple[float, float]:
    """Where the line from ``box``'s centre towards ``toward`` leaves the box."""
    dx, dy = toward[0] - box.cx, toward[1] - box.cy
    if dx == 0 and dy == 0:
        return box.cx, box.cy
    scale = min(
        (BOX_W / 2) / abs(dx) if dx else float("inf"),
        (BOX_H / 2) / abs(dy) if dy else float("inf"),
    )
    return box.cx + dx * scale, box.cy + dy * scale


def _path(a: Box, b: Box, both_ways: bool) -> str:
    """A curve from ``a`` to ``b`` bowed towards the ellipse's centre; when arrows
    run both ways between the two, each keeps to its own side."""
    centre = (WIDTH / 2, HEIGHT / 2)
    mx, my = (a.cx + b.cx) / 2, (a.cy + b.cy) / 2
    qx, qy = mx + (centre[0] - mx) * 0.35, my + (centre[1] - my) * 0.35
    if both_ways:
        dx, dy = b.cx - a.cx, b.cy - a.cy
        length = max((dx * dx + dy * dy) ** 0.5, 1)
        qx, qy = qx - dy / length * 16, qy + dx / length * 16
    sx, sy = _edge_point(a, (qx, qy))
    ex, ey = _edge_point(b, (qx, qy))
    return f"M{sx:.0f},{sy:.0f} Q{qx:.0f},{qy:.0f} {ex:.0f},{ey:.0f}"


@cache
def layout() -> Layout:
    """Where each state's box and each arrow go (computed once per process)."""
    states = list(NodeState.values)
    labels = dict(NodeState.choices)
    pairs: dict[tuple[str, str], list[str]] = {}
    for name, source, target in transitions():
        pairs.setdefault((source, target), []).append(name)
    boxes: dict[str, Box] = {}
    for i, state in enumerate(states):
        # Clockwise from the left: the first half over the top, the rest back below.
        angle = math.pi + 2 * math.pi * i / len(states)
        cx = WIDTH / 2 + RX * math.cos(angle)
        cy = HEIGHT / 2 + RY * math.sin(angle)
        boxes[state] = Box(state, labels[state], round(cx - BOX_W / 2), round(cy - BOX_H / 2))
    arrows = tuple(
        Arrow(
            source,
            target,
            tuple(names),
            _path(boxes[source], boxes[target], (target, source) in pairs),
        )
        for (source, target), names in pairs.items()
    )
    return Layout(tuple(boxes[s] for s in states), arrows, WIDTH, HEIGHT)


def render(counts: dict[str, int]) -> SafeString:
    """The diagram as inline SVG, each state's box showing ``counts[state]``."""
    drawn = layout()
    boxes = [
        (box, counts.get(box.state, 0), STATE_COLOURS.get(box.state, "#6c757d"))
        for box in drawn.boxes
    ]
    return render_to_string(
        "dashboard/lifecycle.svg",
        {"layout": drawn, "boxes": boxes, "box_w": BOX_W, "box_h": BOX_H},
    )
