"""The lifecycle diagram, drawn from the state machine's own declaration.

The states are ``Node.state``'s choices and the arrows are django-fsm's
transitions on that field (``get_all_transitions``), so the picture follows
the code. Layout: states in columns by their longest forward distance from
the initial state (back edges, found by a depth-first walk, do not count),
arrows between the boxes. Python computes the geometry; the template
``dashboard/lifecycle.svg`` draws it with the count of nodes in each state.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from nodes.admin import STATE_COLOURS
from nodes.choices import NodeState
from nodes.models import Node

BOX_W, BOX_H = 118, 46
COL_GAP, ROW_GAP = 52, 26
MARGIN = 16


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


def _ranks(states: list[str], edges: list[tuple[str, str]], initial: str) -> dict[str, int]:
    """Longest-path layering of the graph without its back edges."""
    out: dict[str, list[str]] = {s: [] for s in states}
    for source, target in edges:
        if source != target and target not in out[source]:
            out[source].append(target)
    back: set[tuple[str, str]] = set()
    seen: set[str] = set()
    on_path: set[str] = set()

    def walk(state: str) -> None:
        seen.add(state)
        on_path.add(state)
        for nxt in out[state]:
            if nxt in on_path:
                back.add((state, nxt))
            elif nxt not in seen:
                walk(nxt)
        on_path.discard(state)

    for start in [initial, *states]:
        if start not in seen:
            walk(start)
    rank = dict.fromkeys(states, 0)
    for _ in states:  # relax: a DAG settles within len(states) rounds
        for source in states:
            for target in out[source]:
                if (source, target) not in back and rank[target] < rank[source] + 1:
                    rank[target] = rank[source] + 1
    return rank


def _path(a: Box, b: Box, bend: int) -> str:
    """From the edge of box ``a`` to the edge of box ``b``, bent sideways by ``bend``."""
    ax, ay, bx, by = a.cx, a.cy, b.cx, b.cy
    if abs(bx - ax) >= abs(by - ay):
        sx, ex = (a.x + BOX_W, b.x) if bx > ax else (a.x, b.x + BOX_W)
        sy, ey = ay, by
    else:
        sy, ey = (a.y + BOX_H, b.y) if by > ay else (a.y, b.y + BOX_H)
        sx, ex = ax, bx
    mx, my = (sx + ex) / 2, (sy + ey) / 2
    dx, dy = ex - sx, ey - sy
    length = max((dx * dx + dy * dy) ** 0.5, 1)
    cx, cy = mx - dy / length * bend, my + dx / length * bend
    return f"M{sx},{sy} Q{cx:.0f},{cy:.0f} {ex},{ey}"


@cache
def layout() -> Layout:
    """Where each state's box and each arrow go (computed once per process)."""
    states = list(NodeState.values)
    labels = dict(NodeState.choices)
    declared = transitions()
    pairs: dict[tuple[str, str], list[str]] = {}
    for name, source, target in declared:
        pairs.setdefault((source, target), []).append(name)
    initial = str(Node._meta.get_field("state").default)
    rank = _ranks(states, list(pairs), initial)
    columns: dict[int, list[str]] = {}
    for state in states:
        columns.setdefault(rank[state], []).append(state)
    tallest = max(len(c) for c in columns.values())
    boxes: dict[str, Box] = {}
    for col, members in columns.items():
        top = MARGIN + (tallest - len(members)) * (BOX_H + ROW_GAP) // 2
        for row, state in enumerate(members):
            boxes[state] = Box(
                state,
                labels[state],
                MARGIN + col * (BOX_W + COL_GAP),
                top + row * (BOX_H + ROW_GAP),
            )
    arrows = []
    for (source, target), names in pairs.items():
        # Adjacent forward steps are straight; longer or backward ones bend, and
        # a pair with arrows both ways bends apart.
        forward = rank[target] == rank[source] + 1
        bend = 0 if forward and (target, source) not in pairs else 28
        if rank[target] <= rank[source] and rank[target] != rank[source]:
            bend = 40
        arrows.append(
            Arrow(source, target, tuple(names), _path(boxes[source], boxes[target], bend))
        )
    width = MARGIN * 2 + (max(columns) + 1) * (BOX_W + COL_GAP) - COL_GAP
    height = MARGIN * 2 + tallest * (BOX_H + ROW_GAP) - ROW_GAP
    return Layout(tuple(boxes[s] for s in states), tuple(arrows), width, height)


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
