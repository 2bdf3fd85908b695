"""SIEM forwarding: the audit trail as RFC 5424 syslog to a real rsyslog, over TCP
and over TLS, in order, with nothing lost or duplicated across a collector restart."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit import forwarding
from audit import services as audit
from audit.models import AuditEvent, ForwardCursor
from audit.tasks import forward_syslog
from tests.audit.rsyslog import Rsyslog, free_port, make_pki

pytestmark = pytest.mark.django_db


def add_events(count: int, start: int = 0) -> list[int]:
    return [
        audit.record(
            actor="user:alice",
            action="node.assign",
            object_type="nodes.node",
            object_id=start + i,
            changes={"state": {"before": "discovered", "after": "pending"}},
            message=f'quote " backslash \\ bracket ] and ünïcode {start + i}',
            details={"password": "hunter2"},
        ).seq
        for i in range(count)
    ]


def all_seqs() -> list[int]:
    return list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))


@pytest.fixture
def tcp_rsyslog(tmp_path, settings):
    (tmp_path / "tcp").mkdir()
    server = Rsyslog(tmp_path / "tcp").start()
    settings.PUREBOOT_SYSLOG_URL = f"tcp://127.0.0.1:{server.port}"
    yield server
    server.stop()


def test_message_is_rfc5424_with_structured_data_and_the_event_as_json():
    (seq,) = add_events(1)
    event = AuditEvent.objects.get(seq=seq)

    raw = forwarding.message(event, "ctl 1.example")

    text = raw.decode()
    header, _, body = text.partition(" \ufeff")
    assert header.startswith(f"<109>1 {event.timestamp.isoformat(timespec='microseconds')} ")
    assert " ctl1.example pureboot - node.assign [pureboot@32473 " in header
    assert f'seq="{seq}"' in header and f'hash="{event.hash}"' in header
    assert 'actor="user:alice"' in header and 'object_id="0"' in header
    entry = json.loads(body)
    assert entry["seq"] == seq and entry["hash"] == event.hash
    assert entry["details"] == {"password": "[redacted]"}
    assert "hunter2" not in text
    assert forwarding.frame(raw) == str(len(raw)).encode() + b" " + raw


def test_structured_data_values_are_escaped():
    assert forwarding._param('a"b\\c]d') == 'a\\"b\\\\c\\]d'


def test_events_arrive_in_order_over_tcp(tcp_rsyslog):
    add_events(5)

    report = forwarding.forward()

    expected = all_seqs()
    assert report.sent == len(expected) and report.through_seq == expected[-1]
    assert tcp_rsyslog.wait_for(len(expected)) == expected
    line = tcp_rsyslog.lines()[-1]
    assert "pureboot" in line and "node.assign" in line and "[pureboot@32473 " in line
    assert ForwardCursor.objects.get().last_seq == expected[-1]
    assert forwarding.forward().sent == 0


def test_a_restarted_collector_loses_and_duplicates_nothing(tcp_rsyslog):
    add_events(3)
    forwarding.forward()
    first = tcp_rsyslog.wait_for(len(all_seqs()))

    tcp_rsyslog.stop()
    add_events(4, start=100)
    with pytest.raises(forwarding.ForwardError, match="cannot connect"):
        forwarding.forward()
    cursor = ForwardCursor.objects.get()
    assert cursor.last_seq == first[-1] and "cannot connect" in cursor.last_error
    assert cursor.lease_until is None
    tcp_rsyslog.start()
    add_events(2, start=200)
    forwarding.forward()

    expected = all_seqs()
    assert tcp_rsyslog.wait_for(len(expected)) == expected
    assert len(set(tcp_rsyslog.seqs())) == len(expected)


def test_batches_and_the_command(tcp_rsyslog):
    add_events(7)
    out = io.StringIO()

    assert forwarding.forward(batch=3, max_batches=1).sent == 3
    call_command("audit_forward", stdout=out)

    expected = all_seqs()
    assert tcp_rsyslog.wait_for(len(expected)) == expected
    assert f"through seq {expected[-1]}" in out.getvalue()


def test_tls_with_ca_verification_and_a_client_certificate(tmp_path, settings):
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "tls").mkdir()
    server = Rsyslog(tmp_path / "tls", pki).start()
    try:
        settings.PUREBOOT_SYSLOG_URL = f"tls://localhost:{server.port}"
        settings.PUREBOOT_SYSLOG_CA_FILE = str(pki.ca)
        settings.PUREBOOT_SYSLOG_CERT_FILE = str(pki.client_cert)
        settings.PUREBOOT_SYSLOG_KEY_FILE = str(pki.client_key)
        add_events(4)

        forwarding.forward()
        expected = all_seqs()
        assert server.wait_for(len(expected)) == expected

        # Restart: the next events follow, none again.
        server.stop()
        add_events(2, start=50)
        server.start()
        forwarding.forward()
        expected = all_seqs()
        assert server.wait_for(len(expected)) == expected
    finally:
        server.stop()


def test_tls_refuses_a_collector_its_ca_did_not_sign(tmp_path, settings):
    pki = make_pki(tmp_path / "pki")
    other = make_pki(tmp_path / "other", label="other")
    (tmp_path / "tls").mkdir()
    server = Rsyslog(tmp_path / "tls", pki).start()
    try:
        settings.PUREBOOT_SYSLOG_URL = f"tls://localhost:{server.port}"
        settings.PUREBOOT_SYSLOG_CA_FILE = str(other.ca)
        settings.PUREBOOT_SYSLOG_CERT_FILE = str(pki.client_cert)
        settings.PUREBOOT_SYSLOG_KEY_FILE = str(pki.client_key)
        add_events(2)

        with pytest.raises(forwarding.ForwardError, match="certificate"):
            forwarding.forward()

        assert ForwardCursor.objects.get().last_seq == 0
        assert server.seqs() == []
    finally:
        server.stop()


def test_unconfigured_forwarding_is_a_clear_error(settings):
    settings.PUREBOOT_SYSLOG_URL = ""
    with pytest.raises(CommandError, match="PUREBOOT_SYSLOG_URL is not set"):
        call_command("audit_forward")


def test_a_second_forwarder_waits_for_the_first(tcp_rsyslog):
    add_events(2)
    claimed = forwarding._claim()
    assert claimed is not None

    assert forwarding.forward().busy
    forwarding._release(claimed[1])
    assert forwarding.forward().sent == len(all_seqs())


def test_the_periodic_task_reports_a_collector_that_is_down(settings):
    settings.PUREBOOT_SYSLOG_URL = f"tcp://127.0.0.1:{free_port()}"
    add_events(1)

    said = forward_syslog()

    assert said.startswith("not forwarded: cannot connect to tcp://127.0.0.1:")
    cursor = ForwardCursor.objects.get()
    assert cursor.last_seq == 0 and cursor.last_error.startswith("cannot connect")


def test_a_forwarder_whose_lease_was_taken_stops_and_leaves_the_cursor(settings, monkeypatch):
    settings.PUREBOOT_SYSLOG_URL = f"tcp://127.0.0.1:{free_port()}"
    add_events(3)
    batches: list[list[bytes]] = []

    def slow_send(destination, messages) -> None:
        batches.append(list(messages))
        # This batch took longer than the lease: another run took it over.
        ForwardCursor.objects.filter(name=forwarding.CURSOR_NAME).update(
            lease_token="other", lease_until=timezone.now() + timedelta(minutes=5)
        )

    monkeypatch.setattr(forwarding, "send", slow_send)
    report = forwarding.forward(batch=1)

    assert report.lost and report.sent == 1 and len(batches) == 1
    assert "stopped, cursor left at seq 0" in str(report)
    cursor = ForwardCursor.objects.get()
    assert cursor.last_seq == 0 and cursor.lease_token == "other"


def test_each_batch_renews_the_lease(settings, monkeypatch):
    settings.PUREBOOT_SYSLOG_URL = f"tcp://127.0.0.1:{free_port()}"
    settings.PUREBOOT_SYSLOG_TIMEOUT = 5
    seqs = add_events(2)
    leases = []

    def send(destination, messages) -> None:
        list(messages)
        cursor = ForwardCursor.objects.get()
        leases.append(cursor.lease_until)
        # Nearly expired when the batch ends: the cursor move renews it.
        ForwardCursor.objects.update(lease_until=timezone.now() + timedelta(seconds=1))

    monkeypatch.setattr(forwarding, "send", send)
    before = timezone.now()
    report = forwarding.forward(batch=1, max_batches=2)

    assert report.sent == 2 and not report.lost
    assert (leases[1] - before).total_seconds() >= 4 * 5 + 60 - 1
    assert ForwardCursor.objects.get().last_seq == seqs[-1]


def test_a_collector_that_never_closes_is_given_up_on(settings):
    settings.PUREBOOT_SYSLOG_TIMEOUT = 1
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            until = time.monotonic() + 10
            # A byte now and then (no single wait times out), for 10 s.
            while not stop.wait(0.3) and time.monotonic() < until:
                try:
                    conn.sendall(b".")
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    destination = forwarding.Destination("tcp", "127.0.0.1", server.getsockname()[1])
    started = time.monotonic()
    try:
        with pytest.raises(forwarding.ForwardError, match="did not close within 1 s"):
            forwarding.send(destination, [b"hello"])
        assert time.monotonic() - started < 2.5
    finally:
        stop.set()
        thread.join(5)
        server.close()
