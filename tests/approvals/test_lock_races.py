"""Decide under the lock: racing requests give exactly one outcome, never an unapproved one.

Red team: DELETE (retire) racing an installer's "installed" report retired 7 of
30 nodes without any approval, because the state was read before the row was
locked. These run on PostgreSQL (row locks, real concurrent writers).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection
from django.utils import timezone
from rest_framework.test import APIClient

from approvals import services as approvals
from approvals.models import ApprovalRequest
from nodes import services as node_services
from nodes.models import Node, NodeEvent
from tests.factories import make_node, make_user

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
NODES = 30


def _run_together(jobs) -> list:
    barrier = threading.Barrier(len(jobs))
    outcomes: list = [None] * len(jobs)

    def run(index, job):
        try:
            barrier.wait(10)
            outcomes[index] = job()
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test reads
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    close_old_connections()
    return outcomes


def test_retire_racing_the_installed_report_never_retires_an_installed_node_alone():
    admin = make_user("Admin")
    nodes = [make_node("installing") for _ in range(NODES)]

    def delete(node_id):
        def job():
            client = APIClient()
            client.force_authenticate(admin)
            return client.delete(f"/api/v1/nodes/{node_id}?reason=race").status_code

        return job

    def report(node_id):
        def job():
            node_services.perform(node_id, "complete_install", node_services.SYSTEM)
            return "installed"

        return job

    jobs = []
    for node in nodes:
        jobs += [delete(node.pk), report(node.pk)]
    outcomes = _run_together(jobs)
    statuses = outcomes[0::2]
    assert all(isinstance(s, int) and s < 500 for s in statuses), statuses
    for node, status, reported in zip(nodes, statuses, outcomes[1::2], strict=True):
        node = Node.objects.get(pk=node.pk)
        moves = list(
            NodeEvent.objects.filter(node=node, kind="transition")
            .order_by("timestamp", "id")
            .values_list("from_state", "to_state")
        )
        # Never installed -> retired without a second person.
        assert ("installed", "retired") not in moves, moves
        if status == 202:
            # The report won: the retire became a request, the node is installed.
            assert node.state == "installed" and reported == "installed"
            assert ApprovalRequest.objects.filter(node=node, action="retire").exists()
        else:
            # The retire won, from installing; the late report was refused.
            assert status == 200 and node.state == "retired", (status, node.state, moves)
            assert isinstance(reported, node_services.IllegalTransition), reported
            assert moves == [("installing", "retired")]


def test_approval_racing_expiry_has_one_outcome():
    requester = make_user("Admin")
    approvers = [make_user("Admin") for _ in range(NODES)]
    requests = []
    for _ in range(NODES):
        node = make_node("installed")
        try:
            node_services.perform(node.pk, "reprovision", node_services.Actor.of(requester))
        except node_services.ApprovalRequired as exc:
            requests.append(approvals.file(exc.proposal, requester))
    # Every window ends now: some approvals land before expiry, none after.
    ApprovalRequest.objects.update(expires_at=timezone.now() + timedelta(milliseconds=300))
    jobs = [
        (lambda r=r, u=u: approvals.approve(r.pk, u) and "approved")
        for r, u in zip(requests, approvers, strict=True)
    ] + [approvals.expire_requests for _ in range(4)]
    outcomes = _run_together(jobs)
    for outcome in outcomes[:NODES]:
        assert outcome == "approved" or isinstance(outcome, approvals.NotPending), outcome
    # An approval refused as too late leaves its request for the periodic expiry.
    time.sleep(0.4)
    approvals.expire_requests()
    for request in ApprovalRequest.objects.select_related("node"):
        assert request.status in ("executed", "expired"), request.status
        expected = "reprovision" if request.status == "executed" else "installed"
        assert request.node.state == expected
        transitions = NodeEvent.objects.filter(node=request.node, kind="transition").count()
        assert transitions == (1 if request.status == "executed" else 0)
