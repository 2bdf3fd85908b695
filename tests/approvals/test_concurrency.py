"""Two approvers at the same moment: the action executes exactly once."""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connection

from approvals import services
from approvals.models import ApprovalRequest
from audit.models import AuditEvent
from nodes import services as node_services
from nodes.models import Node, NodeEvent
from tests.factories import make_node, make_user


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_approvals_execute_once():
    node = make_node("installed")
    requester, first, second = make_user("Admin"), make_user("Admin"), make_user("Admin")
    try:
        node_services.perform(node.pk, "reprovision", node_services.Actor.of(requester))
    except node_services.ApprovalRequired as exc:
        request_id = services.file(exc.proposal, requester).pk
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def run(user):
        try:
            barrier.wait()
            services.approve(request_id, user)
            outcomes.append("ok")
        except services.NotPending as exc:
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(u,)) for u in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    close_old_connections()
    assert outcomes.count("ok") == 1, outcomes
    assert isinstance(next(o for o in outcomes if o != "ok"), services.NotPending)
    assert ApprovalRequest.objects.get(pk=request_id).status == "executed"
    assert Node.objects.get(pk=node.pk).state == "reprovision"
    assert NodeEvent.objects.filter(node_id=node.pk, kind="transition").count() == 1
    assert AuditEvent.objects.filter(action="approval.executed").count() == 1
