"""The boot fast path (bootserve.fastpath) against the view it stands in front of.

Every request goes through real WSGI applications: ``pureboot.wsgi``'s
production stack, and Django's own handler behind a recorder that tells
whether the fast path answered or passed the request on.
"""

from __future__ import annotations

from datetime import timedelta
from io import BytesIO
from wsgiref.util import setup_testing_defaults

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bootserve import fastpath, queries
from bootserve.fastpath import BootFastPath
from nodes import services as node_services
from nodes.models import Node
from pureboot.wsgi import application, django_application
from pureboot.wsgi_guard import CharsetGuard
from tests.factories import make_node, make_workflow, sealed
from workflows.models import WorkflowRun

pytestmark = pytest.mark.django_db

MAC = "52:54:00:aa:bb:01"
NETBOOT = """\
name: netboot
tasks:
  - type: pxe_boot
    kernel: /ubuntu/vmlinuz
    initrd: /ubuntu/initrd
  - type: ubuntu_autoinstall
"""
NO_BOOT = """\
name: noboot
tasks:
  - type: cloud_init
"""


@pytest.fixture(autouse=True)
def _keep_test_connection(keep_test_connection):
    """Requests go through Django's WSGI handler here: keep the test's connection."""


class Recorder:
    """Django's WSGI handler, counting the requests the fast path passed on."""

    def __init__(self) -> None:
        self.passed = 0

    def __call__(self, environ, start_response):
        self.passed += 1
        return django_application(environ, start_response)


def environ_for(query: str = "", *, method: str = "GET", path: str = "/boot/ipxe", **extra):
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "HTTP_HOST": "testserver",
        "HTTP_X_REQUEST_ID": "req-1",
        **extra,
    }
    setup_testing_defaults(environ)
    environ["wsgi.input"] = BytesIO()
    return environ


def call(app, query: str = "", **kw):
    """(status code, headers, body) of one request to a WSGI app, closed as servers do."""
    environ = environ_for(query, **kw)
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return seen["status"], seen["headers"], body


def fast_and_view(query: str, **kw):
    """The fast path's answer and the view's, for the same request; the fast one must answer."""
    recorder = Recorder()
    fast = call(BootFastPath(recorder), query, **kw)
    assert recorder.passed == 0, "the fast path passed the request on"
    return fast, call(django_application, query, **kw)


def assign(node, content=NETBOOT):
    name = content.split("\n")[0].split(": ")[1]
    return node_services.perform(
        node.pk, "assign", node_services.SYSTEM, workflow=make_workflow(name, content)
    )


@pytest.mark.parametrize("state", ["discovered", "failed", "installed", "active"])
@pytest.mark.parametrize(
    "query",
    [
        f"mac={MAC}",
        f"mac={MAC}&platform=efi&arch=x86_64",
        "mac=52-54-00-AA-BB-01&platform=pcbios&round=3",
        f"mac=02:00:00:00:00:09&mac={MAC}&uuid=junk&serial=SMBIOS-123&round=%D9%A3",
    ],
)
def test_the_fast_answer_is_the_views_answer(state, query):
    make_node(state, macs=[MAC], hostname="web01")
    fast, view = fast_and_view(query)
    assert fast == view and fast[0] == 200
    assert fast[2].startswith(b"#!ipxe\n") and b"web01" in fast[2]
    assert fast[1]["X-Request-ID"] == "req-1" and fast[1]["Cache-Control"] == "no-store"


@pytest.mark.parametrize("state", ["deprovisioning", "migrating"])
def test_a_machine_for_the_agent_is_passed_to_the_view_for_its_agent_boot(state):
    # Its answer carries a token made for this state episode: never a cached script.
    make_node(state, macs=[MAC], hostname="web01")
    recorder = Recorder()
    call(BootFastPath(recorder), f"mac={MAC}")
    assert recorder.passed == 1


def test_found_by_uuid_or_pi_serial_like_the_view():
    make_node(macs=[MAC], system_uuid="4c4c4544-0042-3510-8052-b7c04f4e3732")
    make_node("installed", firmware="pi", arch="aarch64", serial="1a2b3c4d", macs=[])
    by_uuid, view = fast_and_view("uuid=4C4C4544-0042-3510-8052-B7C04F4E3732&platform=efi")
    assert by_uuid == view and b"is discovered" in by_uuid[2]
    by_serial, view = fast_and_view("serial=0x1a2b3c4d")
    assert by_serial == view and b"is installed" in by_serial[2]


def test_a_pending_node_without_a_network_boot_waits_on_the_fast_path():
    assign(make_node(macs=[MAC]), NO_BOOT)
    fast, view = fast_and_view(f"mac={MAC}")
    assert fast == view and b"is pending; waiting" in fast[2]


def test_head_gets_the_headers_without_the_body():
    make_node("installed", macs=[MAC])
    status, headers, body = fast_and_view(f"mac={MAC}", method="HEAD")[0]
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


@pytest.mark.parametrize(
    "query,kw,status",
    [
        ("mac=zz", {}, 400),
        ("mac=01:00:5e:00:00:01", {}, 400),  # multicast
        ("", {}, 400),
        ("uuid=junk&serial=junk", {}, 400),
        ("&".join(["a=1"] * 2001) + f"&mac={MAC}", {}, 400),  # over DATA_UPLOAD_MAX_NUMBER_FIELDS
        (f"mac={MAC}", {"method": "POST"}, 403),  # CSRF, as for any POST without a token
        (f"mac={MAC}", {"method": "DELETE"}, 403),
        (f"mac={MAC}", {"method": "PUT"}, 403),
        (f"mac={MAC}", {"HTTP_HOST": "evil.example"}, 400),  # not in ALLOWED_HOSTS
        (f"mac={MAC}", {"CONTENT_TYPE": "text/plain; charset=rot13"}, 400),
        (f"mac={MAC}&uuid={'f' * 100_000}", {}, 200),  # junk UUID: ignored
    ],
)
def test_refusals_are_djangos_and_clear(query, kw, status):
    make_node("installed", macs=[MAC])
    recorder = Recorder()
    got = call(CharsetGuard(BootFastPath(recorder)), query, **kw)  # pureboot.wsgi's stack
    assert got[0] == status
    if status != 200:
        assert recorder.passed == 1 or "CONTENT_TYPE" in kw  # Django answered, with its message
        assert got[2]
    assert call(application, query, **kw)[0] == status


def test_other_methods_are_refused_by_the_view():
    make_node("installed", macs=[MAC])
    recorder = Recorder()
    status, headers, _ = call(BootFastPath(recorder), f"mac={MAC}", method="OPTIONS")
    assert status == 405 and headers["Allow"] == "GET, HEAD" and recorder.passed == 1


def test_lifecycle_steps_go_through_django():
    node = assign(make_node(macs=[MAC]))
    recorder = Recorder()
    # Start the install; ask again in the same boot; a later boot retries it.
    for passed, attempts in ((1, 1), (2, 1), (3, 2)):
        if passed == 3:
            Node.objects.filter(pk=node.pk).update(
                install_attempt_at=timezone.now() - timedelta(minutes=10)
            )
        status, _, body = call(BootFastPath(recorder), f"mac={MAC}")
        assert recorder.passed == passed and status == 200
        assert b"kernel http://testserver/boot/files/ubuntu/vmlinuz" in body
        node.refresh_from_db()
        assert node.state == "installing" and node.install_attempts == attempts


def test_unknown_machines_retired_ones_and_discovery_off_go_through_django(settings):
    recorder = Recorder()
    fast = BootFastPath(recorder)
    assert call(fast, f"mac={MAC}")[0] == 200 and Node.objects.filter(state="discovered").exists()
    Node.objects.filter(interfaces__mac=MAC).update(state="retired")
    assert call(fast, f"mac={MAC}")[0] == 404
    settings.PUREBOOT_DISCOVERY = False
    assert call(fast, "mac=52:54:00:aa:bb:77")[0] == 404
    assert recorder.passed == 3


# --- the answer follows the database at once: nothing to invalidate ----------


def test_each_transition_shows_in_the_next_answer():
    node = make_node(macs=[MAC])
    assert b"is discovered; waiting" in call(application, f"mac={MAC}")[2]
    assign(node)
    install = call(application, f"mac={MAC}")[2]
    assert b"kernel http://testserver/boot/files/ubuntu/vmlinuz" in install
    node_services.perform(node.pk, "complete_install", node_services.SYSTEM)
    assert b"is installed; booting the local disk" in call(application, f"mac={MAC}")[2]
    node_services.perform(node.pk, "activate", node_services.SYSTEM)
    assert b"is active; booting the local disk" in call(application, f"mac={MAC}")[2]


def test_failed_install_shows_in_the_next_answer(settings):
    settings.PUREBOOT_MAX_INSTALL_ATTEMPTS = 1
    settings.PUREBOOT_BOOT_SESSION_SECONDS = 0  # every request here is a new boot
    node = assign(make_node(macs=[MAC]))
    assert b"kernel " in call(application, f"mac={MAC}")[2]  # attempt 1
    assert b"booting the local disk" in call(application, f"mac={MAC}")[2]  # limit: failed
    assert Node.objects.get(pk=node.pk).state == "failed"
    assert b"is failed; waiting" in call(application, f"mac={MAC}")[2]


def test_workflow_hostname_and_mac_changes_show_in_the_next_answer():
    node = make_node(macs=[MAC])
    assign(node, NO_BOOT)
    assert b"is pending; waiting" in call(application, f"mac={MAC}")[2]
    node_services.perform(node.pk, "unassign", node_services.SYSTEM)
    assign(node)  # now a workflow with a network boot: the install starts
    assert b"kernel " in call(application, f"mac={MAC}")[2]
    WorkflowRun.objects.all().delete()
    Node.objects.filter(pk=node.pk).update(state="installed")
    node_services.update_node(node.pk, node_services.SYSTEM, {"hostname": "db02"})
    assert b"db02 is installed" in call(application, f"mac={MAC}")[2]
    new_mac = "52:54:00:aa:bb:02"
    with transaction.atomic():  # an installed node's MAC changes only once approved
        bound = node_services.binding(Node.objects.select_for_update().get(pk=node.pk))
    node_services.update_node(
        node.pk,
        node_services.SYSTEM,
        {},
        interfaces=[{"mac": new_mac}],
        approval=sealed("identity.change", f"node:{node.pk}", bound),
    )
    assert b"db02 is installed" in call(application, f"mac={new_mac}")[2]
    assert b"db02" not in call(application, f"mac={MAC}")[2]  # the old MAC is a new machine


def test_a_script_is_reused_only_while_its_node_is_unchanged():
    node = make_node(macs=[MAC], hostname="web01")
    first = fastpath.answer(environ_for(f"mac={MAC}"))
    assert fastpath.answer(environ_for(f"mac={MAC}")) is first  # rendered once
    assert fastpath.answer(environ_for(f"mac={MAC}&round=2")) != first  # another request
    node_services.update_node(node.pk, node_services.SYSTEM, {"hostname": "web02"})
    renamed = fastpath.answer(environ_for(f"mac={MAC}"))
    assert renamed is not first and b"web02" in renamed and b"web01" not in renamed
    assign(node, NO_BOOT)
    assert b"web02 is pending" in fastpath.answer(environ_for(f"mac={MAC}"))


def test_settings_changes_show_in_the_next_answer(settings):
    make_node(macs=[MAC])
    assert b"sleep 10\n" in call(application, f"mac={MAC}")[2]
    settings.PUREBOOT_BOOT_POLL_SECONDS = 3
    settings.PUREBOOT_PUBLIC_URL = "https://boot.example/"
    body = call(application, f"mac={MAC}")[2]
    assert b"sleep 3\n" in body and b"chain --replace --autofree https://boot.example/boot" in body


# --- cost ---------------------------------------------------------------------


@pytest.mark.parametrize("state", ["discovered", "failed", "installed", "active", "pending"])
def test_a_fixed_small_number_of_queries_per_request(state, settings):
    node = make_node("discovered" if state == "pending" else state, macs=[MAC])
    if state == "pending":
        assign(node, NO_BOOT)  # waits: its workflow has no network boot
    counts = []
    for _ in range(3):
        with CaptureQueriesContext(connection) as ctx:
            assert call(application, f"mac={MAC}&uuid=4c4c4544-0042-3510-8052-b7c04f4e3732")[0]
        counts.append(len(ctx.captured_queries))
    # The SELECT; last_seen_at once per window; the boot record once (its
    # repeats are counted in memory).
    assert counts == [3, 1, 1]
    assert Node.objects.get(pk=node.pk).last_seen_at is not None
    settings.PUREBOOT_LAST_SEEN_SECONDS = 0
    with CaptureQueriesContext(connection) as ctx:
        call(application, f"mac={MAC}")
    assert len(ctx.captured_queries) == 3


def test_queries_go_through_the_driver_when_django_records_none():
    make_node("installed", macs=[MAC])
    assert not connection.queries_logged
    status, _, body = call(application, f"mac={MAC}&mac=52:54:00:aa:bb:09")
    assert status == 200 and b"is installed" in body


@pytest.fixture
def nothing_pending():
    yield
    queries._pending.clear()  # nothing may reach another database at exit


@pytest.mark.django_db(transaction=True)
def test_last_seen_writes_are_batched_outside_transactions(nothing_pending):
    first, second = make_node(macs=[MAC]), make_node(macs=["52:54:00:aa:bb:02"])
    queries._flushed_at[0] = -queries.FLUSH_SECONDS  # no write for a while
    with CaptureQueriesContext(connection) as ctx:
        assert call(application, f"mac={MAC}")[0] == 200
    assert len(ctx.captured_queries) == 3  # the SELECT, the write at once, the record
    assert Node.objects.get(pk=first.pk).last_seen_at is not None
    with CaptureQueriesContext(connection) as ctx:
        assert call(application, "mac=52:54:00:aa:bb:02")[0] == 200
    assert len(ctx.captured_queries) == 2  # within a second of the last write: it waits
    assert Node.objects.get(pk=second.pk).last_seen_at is None
    queries.flush_seen()  # what the worker does at exit (or with its next write)
    assert Node.objects.get(pk=second.pk).last_seen_at is not None


def test_a_failure_in_the_fast_path_leaves_the_answer_to_django(monkeypatch):
    make_node("installed", macs=[MAC])

    def broken(*args, **kwargs):
        raise RuntimeError("injected fault")

    monkeypatch.setattr(queries, "seen", broken)
    recorder = Recorder()
    status, _, body = call(BootFastPath(recorder), f"mac={MAC}")
    assert status == 200 and recorder.passed == 1 and b"is installed" in body
