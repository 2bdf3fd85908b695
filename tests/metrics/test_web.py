"""The web app's /metrics: scraped through the test client and parsed like Prometheus does."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client

from approvals import services as approvals
from approvals.models import ApprovalRequest
from bootserve import raspberrypi
from bootserve.engine import Kind
from bootserve.tftp_files import resolve_decided
from bootserve.tftp_metrics import OUTCOMES
from bootserve.tftp_resolver import decode_answer, encode_answer
from nodes import services
from nodes.models import Node
from tests.factories import make_node, make_user, make_workflow

from .scrape import families, value

pytestmark = pytest.mark.django_db

TOKEN = "m3tr1cs-" + "t" * 40


def scrape(client: Client, **extra) -> str:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return response.content.decode()


def test_a_boot_request_and_a_next_query_count_as_decisions(client):
    before = scrape(client)
    mac = "52:54:00:aa:10:01"
    assert client.get(f"/boot/ipxe?mac={mac}").status_code == 200  # unknown: registered, waits
    assert client.get(f"/api/v1/next?mac={mac}").status_code == 200
    after = scrape(client)

    sample = "pureboot_boot_decisions_total"
    assert value(after, sample, protocol="ipxe", outcome="wait") == (
        value(before, sample, protocol="ipxe", outcome="wait") + 1
    )
    assert value(after, sample, protocol="next", outcome="wait") == (
        value(before, sample, protocol="next", outcome="wait") + 1
    )
    # django-prometheus: the request by view and status, and its latency.
    assert (
        value(
            after,
            "django_http_responses_total_by_status_view_method_total",
            status="200",
            view="boot-ipxe",
            method="GET",
        )
        >= 1
    )
    assert "django_http_requests_latency_seconds_by_view_method" in families(after)
    assert "django_db_execute" in families(after)  # the database wrapper counts queries


def test_a_malformed_boot_request_is_no_decision(client):
    before = scrape(client)
    assert client.get("/boot/ipxe?mac=not-a-mac").status_code == 400
    after = scrape(client)
    total = "pureboot_boot_decisions_total"
    assert sum(s.value for s in families(after)["pureboot_boot_decisions"].samples) == sum(
        s.value for s in families(before)["pureboot_boot_decisions"].samples
    ), total


def test_transitions_and_an_install_are_counted_once_committed(
    client, django_capture_on_commit_callbacks
):
    before = scrape(client)
    node = make_node()
    with django_capture_on_commit_callbacks(execute=True):
        services.perform(node.pk, "assign", services.SYSTEM, workflow=make_workflow())
        services.perform(node.pk, "start_install", services.SYSTEM)
        services.perform(node.pk, "complete_install", services.SYSTEM)
    after = scrape(client)

    def moved(sample: str, **labels: str) -> float:
        return value(after, sample, **labels) - value(before, sample, **labels)

    transitions = "pureboot_node_transitions_total"
    assert moved(transitions, from_state="discovered", to_state="pending") == 1
    assert moved(transitions, from_state="pending", to_state="installing") == 1
    assert moved(transitions, from_state="installing", to_state="installed") == 1
    assert moved("pureboot_installs_started_total") == 1
    assert moved("pureboot_installs_succeeded_total") == 1
    assert moved("pureboot_installs_failed_total") == 0
    assert moved("pureboot_install_duration_seconds_count", result="succeeded") == 1
    # The fleet gauge is read from the database: exactly one node, installed, no site.
    assert value(after, "pureboot_nodes", state="installed", site="") == 1
    assert value(after, "pureboot_installs_in_progress") == 0


def test_a_transition_rolled_back_is_not_counted(client):
    before = scrape(client)
    node = make_node()
    # Outside a committed transaction (the test's, never committed): no on_commit runs.
    services.perform(node.pk, "assign", services.SYSTEM, workflow=make_workflow())
    after = scrape(client)
    sample = "pureboot_node_transitions_total"
    labels = {"from_state": "discovered", "to_state": "pending"}
    assert value(after, sample, **labels) == value(before, sample, **labels)


def test_the_approval_queue_and_stuck_installs_are_read_at_scrape_time(client, settings):
    requester = make_user("Admin")
    node = make_node("installed")
    with pytest.raises(services.ApprovalRequired) as exc:
        services.perform(node.pk, "reprovision", services.Actor.of(requester), reason="disk")
    filed = approvals.file(exc.value.proposal, requester)
    ApprovalRequest.objects.filter(pk=filed.pk).update(
        created_at=filed.created_at - timedelta(minutes=30)
    )
    stuck = make_node("installing")
    Node.objects.filter(pk=stuck.pk).update(
        state_changed_at=stuck.state_changed_at - timedelta(hours=5)
    )
    settings.PUREBOOT_INSTALL_TIMEOUT_MINUTES = 60
    text = scrape(client)
    assert value(text, "pureboot_approvals_pending", action="reprovision") == 1
    age = value(text, "pureboot_approvals_oldest_pending_age_seconds", action="reprovision")
    assert 30 * 60 <= age < 31 * 60
    assert value(text, "pureboot_installs_stuck") == 1
    assert value(text, "pureboot_installs_in_progress") == 1
    assert value(text, "pureboot_install_oldest_age_seconds") >= 5 * 3600

    approvals.approve(filed.pk, make_user("Admin"))
    text = scrape(client)
    assert value(text, "pureboot_approvals_pending", action="reprovision") == 0


# --- who may scrape ---------------------------------------------------------------


def refused(response) -> bool:
    return response.status_code == 403 and response.json()["code"] == "permission_denied"


def test_an_address_outside_loopback_and_the_allowed_networks_is_refused(client, settings):
    settings.PUREBOOT_METRICS_ALLOW = ["198.51.100.0/24"]
    assert refused(client.get("/metrics", REMOTE_ADDR="192.0.2.9"))
    assert refused(client.get("/metrics", REMOTE_ADDR="::ffff:192.0.2.9"))
    assert refused(client.get("/metrics", REMOTE_ADDR=""))
    # A forwarded header from a peer that is no trusted proxy changes nothing.
    assert refused(
        client.get("/metrics", REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR="127.0.0.1")
    )
    assert client.get("/metrics", REMOTE_ADDR="198.51.100.20").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


def test_a_bearer_token_opens_metrics_to_any_address_and_a_wrong_one_does_not(client, settings):
    elsewhere = {"REMOTE_ADDR": "192.0.2.9"}
    assert refused(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **elsewhere))
    settings.PUREBOOT_METRICS_TOKEN = TOKEN
    assert (
        client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **elsewhere).status_code == 200
    )
    for wrong in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer", "Bearer " + "é" * 40, TOKEN):
        assert refused(client.get("/metrics", HTTP_AUTHORIZATION=wrong, **elsewhere)), wrong


def test_a_wrong_token_is_refused_even_from_loopback(client, settings):
    """Behind a proxy missing from PUREBOOT_TRUSTED_PROXIES, everyone looks like loopback."""
    settings.PUREBOOT_METRICS_TOKEN = TOKEN
    for wrong in (f"Bearer {TOKEN[:-1]}", "Basic dXNlcjpwYXNz", "Bearer"):
        assert refused(client.get("/metrics", HTTP_AUTHORIZATION=wrong)), wrong
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    settings.PUREBOOT_METRICS_TOKEN = ""  # no token configured: credentials open nothing
    assert refused(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))


def test_metrics_answer_get_and_head_only(client):
    assert client.head("/metrics").status_code == 200
    assert client.post("/metrics").status_code == 405
    assert client.delete("/metrics").status_code == 405


def test_a_signed_in_user_from_outside_gets_no_metrics(client, settings):
    """Metrics are for the monitoring system, not for accounts: a session does not open them."""
    client.force_login(make_user("Admin"))
    assert refused(client.get("/metrics", REMOTE_ADDR="192.0.2.9"))


def test_the_daemon_knows_every_decision_outcome_without_importing_the_engine():
    assert set(OUTCOMES) == {kind.value for kind in Kind}


def test_the_database_helper_tells_the_daemon_its_decision():
    message = encode_answer(7, b"DEFAULT local\n", ("pxelinux", "local"))
    assert decode_answer(message) == (7, b"DEFAULT local\n", ("pxelinux", "local"))
    assert decode_answer(encode_answer(8, Path("/srv/boot/x"))) == (8, Path("/srv/boot/x"), None)
    with pytest.raises(ValueError):
        decode_answer(b'{"id": 9, "decision": ["pxelinux"]}\n')


def test_tftp_decisions_are_reported_once_per_boot_request(settings, tmp_path):
    """What the TFTP daemon's helper reports: a PXELINUX config and a Pi's first file are
    boot requests; the Pi's later files and the default config are not."""
    settings.PUREBOOT_BOOT_ROOT = tmp_path
    settings.PUREBOOT_DISCOVERY = True
    raspberrypi.BOOTS.clear()
    peer = ("10.99.0.61", 40000)
    _config, decided = resolve_decided("pxelinux.cfg/01-52-54-00-5e-09-01", peer)
    assert decided == ("pxelinux", "wait")
    assert resolve_decided("pxelinux.cfg/default", peer)[1] is None
    assert resolve_decided("5e09abcd/start4.elf", peer)[1] == ("pi", "wait")
    assert resolve_decided("5e09abcd/fixup4.dat", peer)[1] is None
    assert resolve_decided("undionly.kpxe", peer)[1] is None
    raspberrypi.BOOTS.clear()
