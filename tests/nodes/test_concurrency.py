"""Two transitions on one node at the same moment: exactly one wins."""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connection, transaction
from django_fsm import ConcurrentTransition

from nodes import services
from nodes.models import Node, NodeEvent
from tests.factories import make_node, make_workflow


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
# Both start from `discovered`, and neither is legal after the other. (Deprovision
# used to be the second action; it is an approval request now: see
# tests/approvals/test_concurrency.py.)
@pytest.mark.parametrize("second", ["assign"])
def test_concurrent_transitions_one_wins(second):
    node = make_node()
    wf = make_workflow()
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def run(action):
        try:
            barrier.wait()
            params = {"workflow": wf} if action == "assign" else {}
            services.perform(node.pk, action, services.SYSTEM, **params)
            outcomes.append("ok")
        except services.IllegalTransition as exc:
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(a,)) for a in ("assign", second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    close_old_connections()
    assert outcomes.count("ok") == 1, outcomes
    loser = next(o for o in outcomes if o != "ok")
    assert isinstance(loser, services.IllegalTransition)
    assert NodeEvent.objects.filter(node_id=node.pk, kind="transition").count() == 1


@pytest.mark.django_db
def test_stale_instance_cannot_overwrite_a_newer_state():
    node = make_node()
    stale = Node.objects.get(pk=node.pk)
    services.perform(node.pk, "assign", services.SYSTEM, workflow=make_workflow())
    stale.hostname = "late-edit"
    with pytest.raises(ConcurrentTransition), transaction.atomic():
        stale.save()
    assert Node.objects.get(pk=node.pk).state == "pending"
