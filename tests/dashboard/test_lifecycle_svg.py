"""The lifecycle diagram is drawn from django-fsm's declaration, with a count per state."""

from __future__ import annotations

import re

import pytest

from dashboard import lifecycle_svg
from nodes.choices import NodeState
from nodes.models import Node
from tests.factories import make_node

pytestmark = pytest.mark.django_db


def test_every_state_and_every_declared_transition_is_drawn(client, admin):
    make_node("active", hostname="a1")
    make_node("active", hostname="a2")
    make_node("failed", hostname="f1")
    client.force_login(admin)
    html = client.get("/admin/dashboard/panel/fleet/").content.decode()
    svg = html[html.index("<svg") : html.index("</svg>")]
    counts = dict(re.findall(r'data-state="([a-z]+)" data-count="(\d+)"', svg))
    assert set(counts) == set(NodeState.values)
    assert counts["active"] == "2" and counts["failed"] == "1" and counts["pending"] == "0"
    drawn = set(re.findall(r'data-source="([a-z]+)" data-target="([a-z]+)"', svg))
    field = Node._meta.get_field("state")
    declared = {(str(t.source), str(t.target)) for t in field.get_all_transitions(Node)}
    assert drawn == declared
    actions = " ".join(re.findall(r'data-actions="([a-z_ ]+)"', svg)).split()
    assert set(actions) == {t.name for t in field.get_all_transitions(Node)}


def test_boxes_do_not_overlap():
    layout = lifecycle_svg.layout()
    spots = {(b.x, b.y) for b in layout.boxes}
    assert len(spots) == len(layout.boxes) == len(NodeState.values)
    for box in layout.boxes:
        assert 0 <= box.x <= layout.width - lifecycle_svg.BOX_W
        assert 0 <= box.y <= layout.height - lifecycle_svg.BOX_H
