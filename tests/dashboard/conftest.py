"""Fixtures for the dashboard and node history tests: staff users by role and a
node with an install in progress."""

from __future__ import annotations

import pytest

from bootserve import records
from nodes import services as node_services
from tests.factories import make_node, make_user, make_workflow
from workflows import services as workflow_services


def staff(role: str, sites=(), username: str | None = None):
    user = make_user(role, sites=sites, username=username)
    user.is_staff = True
    user.save()
    return user


def installing_node(site, hostname: str, admin, *, progress: int = 30, logs=("partitioned",)):
    """A node assigned by ``admin`` and installing, with one progress report."""
    node = make_node(site=site, hostname=hostname)
    node_services.perform(
        node.pk, "assign", node_services.Actor.of(admin), workflow=make_workflow()
    )
    node, run, _ = workflow_services.start_install(node.pk)
    workflow_services.handle_report(
        run.pk, {"status": "installing", "progress": progress, "step": 0, "logs": list(logs)}
    )
    return node, run


@pytest.fixture(autouse=True)
def _fresh_boot_record_memory():
    """Boot records coalesce per process: each test starts with none remembered."""
    records.forget()
    yield
    records.forget()


@pytest.fixture
def admin(db):
    return staff("Admin", username="ada-admin")


@pytest.fixture
def operator_a(db, site_a):
    return staff("Operator", sites=[site_a], username="otto-op")


@pytest.fixture
def auditor(db):
    return staff("Auditor", username="aud-auditor")
