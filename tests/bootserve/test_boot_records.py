"""Boot records: what each protocol records, what it costs, who sees them, and floods.

The TFTP records are made by the real daemon (a real UDP client against
``BootServer``, the helper's record path through its socket); the DHCP
records by the real dnsmasq running its dhcp-script in a private network
namespace (the ``lab`` fixture of test_dhcp: root, dnsmasq-base,
busybox-static and iproute2; it fails naming the package when one is missing).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bootserve import dhcp, fastpath, records, tftp_db, tftp_files, tftp_resolver
from bootserve.models import BootRecord
from bootserve.tasks import prune_boot_records
from bootserve.tftp import BootServer
from nodes import services as node_services
from pureboot.wsgi import application
from tests.factories import make_node, make_user, make_workflow

from . import tftpclient
from .test_dhcp import GUID, PXE_UEFI, lab, lab_network  # noqa: F401 - the lab fixture
from .test_fastpath import call, environ_for

pytestmark = pytest.mark.django_db

MAC = "52:54:00:b0:07:01"
OTHER = "52:54:00:b0:07:02"


def ipxe(client, query: str = f"mac={MAC}", ip: str = "10.0.0.5"):
    return client.get(f"/boot/ipxe?{query}", REMOTE_ADDR=ip)


def only() -> BootRecord:
    (row,) = BootRecord.objects.all()
    return row


# --- HTTP -----------------------------------------------------------------------


def test_an_unknown_machine_is_recorded_as_discovered(client):
    assert ipxe(client).status_code == 200
    row = only()
    node = row.node
    assert (row.protocol, row.outcome, row.client_address, row.mac) == (
        "http",
        "discovered",
        "10.0.0.5",
        MAC,
    )
    assert node is not None and node.interfaces.get().mac == MAC
    assert row.asked == f"/boot/ipxe?mac={MAC}"
    assert row.answer == "iPXE script: unknown machine: discovered"


@pytest.mark.parametrize(
    "state, outcome",
    [("installed", "local_disk"), ("failed", "wait"), ("retired", "no_answer")],
)
def test_each_decision_is_recorded_with_the_node_its_site_and_state(client, site_a, state, outcome):
    node = make_node(state, site=site_a, macs=[MAC])
    ipxe(client)
    row = only()
    assert (row.outcome, row.node_id, row.site_id, row.node_state) == (
        outcome,
        node.pk,
        site_a.pk,
        state,
    )


def test_an_install_is_recorded_as_install(client, site_a):
    node = make_node(site=site_a, macs=[MAC])
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=make_workflow())
    assert "kernel" in ipxe(client).content.decode()
    row = only()
    assert row.outcome == "install" and row.node_state == "installing"
    assert row.answer == "iPXE script: pending: starting the install"


def test_the_fast_path_records_as_the_view_does():
    node = make_node("installed", macs=[MAC])
    status, _, body = call(application, f"mac={MAC}", REMOTE_ADDR="10.0.0.7")
    assert status == 200 and b"is installed" in body
    row = only()
    assert (row.outcome, row.node_id, row.client_address) == ("local_disk", node.pk, "10.0.0.7")
    assert row.answer == "iPXE script: installed: boot from the local disk"


def test_next_and_uefi_http_boot_are_recorded(client, settings, tmp_path):
    settings.PUREBOOT_BOOT_ROOT = str(tmp_path)
    (tmp_path / "snponly.efi").write_bytes(b"efi")
    installed = make_node("installed", macs=[MAC])
    make_node(macs=[OTHER])
    assert client.get(f"/api/v1/next?mac={MAC}").json() == {"action": "local"}
    assert client.get(f"/boot/http/snponly.efi?mac={MAC}").status_code == 404
    assert client.get(f"/boot/http/snponly.efi?mac={OTHER}").status_code == 200
    assert client.get("/boot/files/snponly.efi").status_code == 200
    rows = list(BootRecord.objects.order_by("id"))
    assert [(r.outcome, r.node_id == installed.pk) for r in rows] == [
        ("local_disk", True),
        ("local_disk", True),
        ("file_sent", False),
        ("file_sent", False),
    ]
    assert rows[0].answer.startswith("next instructions (read-only): installed")
    assert rows[1].answer.startswith("UEFI HTTP Boot refused at once (404)")
    assert rows[2].answer == "UEFI HTTP Boot first stage snponly.efi" and rows[2].mac == OTHER
    assert rows[3].asked == "/boot/files/snponly.efi" and rows[3].node is None


def test_a_poll_costs_one_insert_and_its_repeats_none(client, django_assert_max_num_queries):
    make_node("installed", macs=[MAC])
    with CaptureQueriesContext(connection) as ctx:
        ipxe(client)  # find the node, last_seen_at, the record
    writes = [q["sql"] for q in ctx.captured_queries if "bootserve_bootrecord" in q["sql"]]
    assert len(writes) == 1 and writes[0].startswith("INSERT")
    for _ in range(3):
        with django_assert_max_num_queries(1):  # find the node; the repeat is counted
            ipxe(client)
    with django_assert_max_num_queries(1):  # the fast path's SELECT, nothing else
        assert fastpath.answer(environ_for(f"mac={MAC}", REMOTE_ADDR="10.0.0.5")) is not None
    with django_assert_max_num_queries(2):  # another address: its own row
        ipxe(client, ip="10.0.0.6")


# --- floods -------------------------------------------------------------------


def test_identical_requests_fold_into_one_row(client, settings, monkeypatch):
    make_node("installed", macs=[MAC])
    now = [1_000_000.0]
    monkeypatch.setattr(records.time, "monotonic", lambda: now[0])
    for _ in range(5):
        ipxe(client)
        now[0] += 10
    assert only().repeats == 1  # four repeats counted, not yet written
    ipxe(client, ip="10.0.0.6")  # another address: its own row
    assert BootRecord.objects.count() == 2
    now[0] += 60  # past the window: the count is written, and a new row begins
    ipxe(client)
    first, _other, second = BootRecord.objects.order_by("id")
    assert (first.repeats, second.repeats) == (5, 1) and first.last_at > first.created
    settings.PUREBOOT_BOOT_RECORD_COALESCE_SECONDS = 0
    records.forget()
    ipxe(client)
    ipxe(client)
    assert BootRecord.objects.count() == 5


def test_an_address_past_its_cap_is_counted_not_recorded(client, settings, monkeypatch, caplog):
    settings.PUREBOOT_BOOT_RECORD_RATE = 3
    now = [1_000_000.0]
    monkeypatch.setattr(records.time, "monotonic", lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="bootserve.records"):
        for i in range(10):  # ten different MACs from one address
            ipxe(client, f"mac=52:54:00:f1:00:{i:02x}")
    assert BootRecord.objects.count() == 3
    assert "passed 3 records a minute" in caplog.text
    ipxe(client, f"mac={MAC}", ip="10.0.0.9")  # another address is not held back
    assert BootRecord.objects.filter(client_address="10.0.0.9").count() == 1
    now[0] += 60  # the next minute: the count left out rides on the next row
    ipxe(client, f"mac={OTHER}")
    latest = BootRecord.objects.filter(client_address="10.0.0.5").order_by("-id").first()
    assert latest.suppressed == 7 and latest.mac == OTHER


def test_racing_identical_requests_make_one_row(monkeypatch):
    """Threads of one worker (gthread) answering the same poll at once: one INSERT."""
    inserts = []
    started = threading.Event()

    def slow_create(**fields):
        inserts.append(fields)
        started.set()
        threading.Event().wait(0.2)  # the others arrive while this INSERT runs
        return BootRecord(pk=42, **fields)

    monkeypatch.setattr(BootRecord.objects, "create", slow_create)

    def poll():
        records.record_boot("http", "wait", address="10.0.0.5", mac=MAC, asked="/boot/ipxe")

    first = threading.Thread(target=poll)
    first.start()
    started.wait(5)
    others = [threading.Thread(target=poll) for _ in range(7)]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(5)
    assert len(inserts) == 1
    ((pk, _until, repeats, _at),) = records._recent.values()
    assert (pk, repeats) == (42, 7)


def test_records_older_than_the_retention_are_pruned(settings):
    settings.PUREBOOT_BOOT_RECORD_DAYS = 7
    old = timezone.now() - timedelta(days=8)
    BootRecord.objects.create(protocol="http", outcome="wait", created=old, last_at=old)
    kept = BootRecord.objects.create(protocol="http", outcome="wait")
    assert prune_boot_records() == 1
    assert list(BootRecord.objects.all()) == [kept]
    out = StringIO()
    BootRecord.objects.filter(pk=kept.pk).update(last_at=timezone.now() - timedelta(days=3))
    call_command("prune_boot_records", "--days", "2", stdout=out)
    assert out.getvalue() == "deleted 1 boot record(s) older than 2 day(s)\n"
    for bad in ("0", "-1", "abc", "99999999999999999999"):
        with pytest.raises(CommandError, match="a whole number of days from 1 to 36500"):
            call_command("prune_boot_records", "--days", bad)


# --- hostile input and failures ---------------------------------------------


@pytest.mark.parametrize(
    "query, why",
    [
        ("mac=not-a-mac", "is not a MAC address"),
        ("mac=%00%01" + "a" * 20, "is not a MAC address"),
        ("uuid=x", "no mac, uuid or serial"),
        ("mac=" + "A" * 5000, "Enter a MAC address"),
    ],
)
def test_malformed_requests_are_refused_and_recorded_safely(client, query, why):
    assert ipxe(client, query).status_code == 400
    row = only()
    assert row.outcome == "refused" and why in row.answer and row.mac == ""
    assert "\x00" not in row.asked and len(row.asked) <= 255
    assert row.asked.startswith("/boot/ipxe?")


def test_hostile_text_is_cleaned_and_capped():
    records.record_boot(
        "tftp",
        "not_found",
        address="not-an-address",
        mac="zz:zz",
        asked="a\x00b\x1b[31m" + "x" * 10_000,
        answer="y" * 10_000,
        node_state="\x00" * 100,
    )
    row = only()
    assert row.asked.startswith("a?b?[31m") and len(row.asked) == 255 and row.asked[-1] == "…"
    assert len(row.answer) == 200 and row.client_address is None and row.mac == ""
    assert row.node_state == "?" * 31 + "…"


def test_the_boot_answer_is_unchanged_when_the_record_write_fails(client, monkeypatch, caplog):
    make_node("installed", macs=[MAC])
    good = ipxe(client).content
    BootRecord.objects.all().delete()
    records.forget()

    def broken(*args, **kwargs):
        raise DatabaseError("disk full")

    monkeypatch.setattr(BootRecord.objects, "create", broken)
    with caplog.at_level(logging.WARNING, logger="bootserve.records"):
        response = ipxe(client)
        fast = fastpath.answer(environ_for(f"mac={MAC}"))
    assert response.status_code == 200 and response.content == good
    assert fast is not None and b"is installed" in fast
    assert "boot record not written (http local_disk from 10.0.0.5)" in caplog.text
    assert not BootRecord.objects.exists()


# --- TFTP -------------------------------------------------------------------


@pytest.fixture
def tftp(settings, tmp_path):
    """The daemon's loop with the helper's own functions called in place (its DB side)."""
    root = tmp_path / "boot"
    (root / "pxelinux.cfg").mkdir(parents=True)
    (root / "lpxelinux.0").write_bytes(b"L" * 3000)
    (root / "ldlinux.c32").write_bytes(b"module")
    settings.PUREBOOT_BOOT_ROOT = str(root)
    srv = BootServer(
        "127.0.0.1", 0, tftp_files.resolve, retries=3, timeout=1, recorder=tftp_files.record
    )
    port = srv._listener.getsockname()[1]
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield port
    srv._should_stop = True
    tftpclient.send_raw("127.0.0.1", port, b"\x00", timeout=0.2)
    thread.join(5)


@pytest.mark.django_db(transaction=True)
def test_tftp_transfers_and_config_decisions_are_recorded(tftp, site_a):
    node = make_node("installed", site=site_a, macs=[MAC])
    assert tftpclient.read("127.0.0.1", tftp, "lpxelinux.0")[0] == b"L" * 3000
    assert tftpclient.read("127.0.0.1", tftp, "ldlinux.c32")[0] == b"module"  # a piece
    config = tftpclient.read("127.0.0.1", tftp, "pxelinux.cfg/01-52-54-00-b0-07-01")[0]
    assert b"LOCALBOOT" in config
    for name in ("missing.efi", "pxelinux.cfg/C0A80001", "../etc/passwd"):
        with pytest.raises(tftpclient.TftpError):
            tftpclient.read("127.0.0.1", tftp, name)
    # A transfer is recorded once its last ACK arrives, which the client
    # sends without waiting: give the loop a moment.
    for _ in range(50):
        if BootRecord.objects.count() >= 4:
            break
        threading.Event().wait(0.05)
    rows = sorted(BootRecord.objects.values_list("asked", "outcome", "node_id"))
    assert rows == [
        ("../etc/passwd", "refused", None),
        ("lpxelinux.0", "file_sent", None),
        ("missing.efi", "not_found", None),
        ("pxelinux.cfg/01-52-54-00-b0-07-01", "local_disk", node.pk),
    ]
    sent = BootRecord.objects.get(asked="lpxelinux.0")
    assert sent.protocol == "tftp" and sent.client_address == "127.0.0.1"
    assert sent.answer.startswith("TFTP: 3000 bytes sent in ")
    decided = BootRecord.objects.get(outcome="local_disk")
    assert decided.site_id == site_a.pk and decided.answer.startswith("PXELINUX config: ")


@pytest.mark.django_db(transaction=True)  # the helper closes connections as requests do
def test_the_database_helper_writes_the_daemon_reports_and_answers_nothing():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    report = {"peer": "10.0.0.8", "path": "snponly.efi", "outcome": "file_sent", "answer": "ok"}
    for message in (
        {"record": report},
        {"record": {**report, "outcome": "install"}},  # not a transfer outcome: dropped
        {"record": "junk"},
        {"record": {**report, "path": "x\x00" * 500, "outcome": "refused"}},
    ):
        ours.send(json.dumps(message).encode())
    ours.close()
    with theirs:
        tftp_db.serve(theirs, idle=5)  # returns when the daemon's end is closed
    rows = list(BootRecord.objects.order_by("id"))
    assert [(r.asked[:11], r.outcome) for r in rows] == [
        ("snponly.efi", "file_sent"),
        ("x?x?x?x?x?x", "refused"),
    ]
    assert len(rows[1].asked) == 255


# --- DHCP ----------------------------------------------------------------------


def test_dhcp_lease_events_are_recorded(site_a, monkeypatch):
    node = make_node("pending", site=site_a, macs=[MAC])
    monkeypatch.setenv("DNSMASQ_VENDOR_CLASS", "PXEClient:Arch:00007:UNDI:003016")
    monkeypatch.setenv("DNSMASQ_TAGS", "efi64 netboot known br0")
    monkeypatch.setenv("DNSMASQ_TIME_REMAINING", "3600")
    for action in ("add", "old", "del"):
        call_command("record_dhcp_event", action, MAC.upper(), "10.99.0.150", "pxe-client")
    rows = list(BootRecord.objects.order_by("id"))
    assert [r.outcome for r in rows] == ["dhcp_lease", "dhcp_renew", "dhcp_release"]
    assert {(r.protocol, r.node_id, r.site_id, r.mac) for r in rows} == {
        ("dhcp", node.pk, site_a.pk, MAC)
    }
    assert rows[0].asked == (
        "vendor class PXEClient:Arch:00007:UNDI:003016; tags efi64 netboot known br0; "
        "host name pxe-client"
    )
    assert rows[0].answer == "DHCP lease 10.99.0.150 granted for 3600 s"
    assert rows[2].answer == "DHCP lease 10.99.0.150 ended"


@pytest.mark.parametrize(
    "args, message",
    [
        (("init", MAC, "10.0.0.1"), "'init' is not recorded (only add, old, del)"),
        (("add", "01-aa", "10.0.0.1"), "is not a MAC address"),
        (("add", MAC, "10.0.0.999"), "'10.0.0.999' is not an IP address"),
        (("add", MAC, "x" * 5000), "is not an IP address"),
    ],
)
def test_bad_dhcp_events_are_refused_with_their_reason(args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("record_dhcp_event", *args)
    assert not BootRecord.objects.exists()


def test_the_dhcp_script_is_written_in_full_mode_and_refused_in_proxy_mode():
    base = {
        "interface": "br0",
        "tftp_server": "10.99.0.1",
        "http_base": "http://10.99.0.1:8000",
        "range_start": "10.99.0.100",
        "range_end": "10.99.0.200",
        "script": "/usr/local/bin/pureboot-dhcp-event",
    }
    text = dhcp.render_config(dhcp.BootNetwork(mode="full", **base), "/srv/hosts")
    assert "dhcp-script=/usr/local/bin/pureboot-dhcp-event" in text.splitlines()
    with pytest.raises(dhcp.DhcpConfigError, match="proxy DHCP grants no leases"):
        dhcp.render_config(
            dhcp.BootNetwork(mode="proxy", proxy_subnet="10.99.0.0/24", **base), "/srv/hosts"
        )
    with pytest.raises(dhcp.DhcpConfigError, match="an absolute path"):
        dhcp.render_config(
            dhcp.BootNetwork(mode="full", **{**base, "script": "relative, x"}), "/srv/hosts"
        )


SCRIPT = """#!/bin/sh
# What dnsmasq passes its dhcp-script, kept for the test to replay.
{{ printf '%s\\n' "$@"; env | grep '^DNSMASQ_'; }} > "{out}/event-$1-$$"
"""


@pytest.mark.lab
def test_lab_dnsmasq_runs_the_script_and_its_events_are_recorded(
    lab,  # noqa: F811 - the fixture imported above
    site_a,
    settings,
    monkeypatch,
):
    settings.PUREBOOT_DHCP_MODE = "full"
    node = make_node("pending", site=site_a, macs=[MAC])
    dhcp.sync_host(node.pk)
    events = lab.dir / "events"
    events.mkdir()
    events.chmod(0o777)
    script = lab.dir / "dhcp-event"
    script.write_text(SCRIPT.format(out=events))
    script.chmod(0o755)
    lab.start(lab_network(lab, script=str(script)))
    offer = lab.dhcp(MAC, *PXE_UEFI, *GUID)
    assert offer is not None, lab.log.read_text()
    (event,) = _wait_for_files(events)
    args, env = _parse_event(event)
    assert args[:3] == ["add", MAC, offer["ip"]]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    call_command("record_dhcp_event", *args)
    row = only()
    assert (row.outcome, row.node_id, row.client_address) == ("dhcp_lease", node.pk, offer["ip"])
    assert "vendor class PXEClient:Arch:00007" in row.asked and "efi64" in row.asked


def _wait_for_files(folder: Path, timeout: float = 10) -> list[Path]:
    deadline = timezone.now() + timedelta(seconds=timeout)
    while timezone.now() < deadline:
        found = sorted(folder.glob("event-add-*"))
        if found:
            return found
        threading.Event().wait(0.1)
    raise AssertionError("dnsmasq ran no dhcp-script")


def _parse_event(path: Path) -> tuple[list[str], dict[str, str]]:
    args, env = [], {}
    for line in path.read_text().splitlines():
        if line.startswith("DNSMASQ_") and "=" in line:
            key, _, value = line.partition("=")
            env[key] = value
        else:
            args.append(line)
    return args, env


# --- who sees what ----------------------------------------------------------


@pytest.fixture
def spread(site_a, site_b):
    """A record of site A's node, of site B's, and of an unknown machine."""
    a = make_node("installed", site=site_a, macs=[MAC])
    b = make_node("installed", site=site_b, macs=[OTHER])
    rows = {}
    for name, node in (("a", a), ("b", b), ("unknown", None)):
        rows[name] = BootRecord.objects.create(
            protocol="tftp" if node is None else "http",
            outcome="wait" if node is None else "local_disk",
            node=node,
            site=node.site if node else None,
            mac=node.interfaces.get().mac if node else "52:54:00:99:99:99",
            asked=f"asked by {name}",
        )
    return rows


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return sorted(r["id"] for r in response.json()["results"])


@pytest.mark.parametrize("role", ["Operator", "User"])
def test_a_site_user_sees_their_sites_records_only(api, spread, site_a, role):
    person = make_user(role, sites=[site_a])
    assert records.recent_boots(person) == [spread["a"]]
    user = api(person)
    assert ids(user.get("/api/v1/boots")) == [spread["a"].pk]
    assert user.get(f"/api/v1/boots/{spread['b'].pk}").status_code == 404
    assert user.get(f"/api/v1/boots/{spread['unknown'].pk}").status_code == 404
    assert ids(user.get(f"/api/v1/boots?node={spread['b'].node_id}")) == []


@pytest.mark.parametrize("role", ["Admin", "Auditor"])
def test_all_sites_roles_see_every_record_and_unknown_machines(api, spread, role):
    user = make_user(role)
    assert ids(api(user).get("/api/v1/boots")) == sorted(r.pk for r in spread.values())
    row = api(user).get(f"/api/v1/boots/{spread['b'].pk}").json()
    assert row["node_name"] == str(spread["b"].node) and row["outcome"] == "local_disk"
    assert len(records.recent_boots(user, limit=2)) == 2
    assert records.recent_boots(user, node=spread["a"].node) == [spread["a"]]


def test_no_role_or_no_sign_in_sees_nothing(api, spread):
    assert api().get("/api/v1/boots").status_code in (401, 403)
    assert api(make_user()).get("/api/v1/boots").status_code == 403
    assert records.recent_boots(make_user()) == []


def test_the_api_filters(api, spread):
    admin = api(make_user("Admin"))
    a, unknown = spread["a"], spread["unknown"]
    assert ids(admin.get(f"/api/v1/boots?node={a.node_id}")) == [a.pk]
    assert ids(admin.get("/api/v1/boots?mac=52-54-00-99-99-99")) == [unknown.pk]
    assert ids(admin.get("/api/v1/boots?protocol=tftp")) == [unknown.pk]
    assert ids(admin.get("/api/v1/boots?outcome=wait&outcome=install")) == [unknown.pk]
    BootRecord.objects.filter(pk=a.pk).update(created=timezone.now() - timedelta(days=2))
    since = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert a.pk not in ids(admin.get(f"/api/v1/boots?since={since}"))


@pytest.mark.parametrize(
    "query, field",
    [
        ("mac=zz", "mac"),
        ("mac=" + "a" * 500, "mac"),
        ("node=abc", "node"),
        ("node=99999999999999999999999", "node"),
        ("protocol=gopher", "protocol"),
        ("outcome=hacked", "outcome"),
        ("since=yesterday", "since"),
        ("since=9999-12-31T23:59:59-23:59", "since"),
    ],
)
def test_bad_filters_are_a_400_naming_the_field(api, spread, query, field):
    response = api(make_user("Admin")).get(f"/api/v1/boots?{query}")
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_the_api_is_read_only(api, spread):
    admin = api(make_user("Admin"))
    assert admin.post("/api/v1/boots", {}, format="json").status_code == 405
    assert admin.delete(f"/api/v1/boots/{spread['a'].pk}").status_code == 405
    assert BootRecord.objects.count() == 3


def test_the_admin_is_read_only_and_scoped(client, spread, site_a):
    operator = make_user("Operator", sites=[site_a])
    operator.is_staff = True
    operator.save(update_fields=["is_staff"])
    client.force_login(operator)
    page = client.get("/admin/bootserve/bootrecord/")
    assert page.status_code == 200 and b"1 boot record" in page.content
    for search in ("52:54:00", "127.0", "asked by"):  # MAC, address (inet in PostgreSQL)
        found = client.get("/admin/bootserve/bootrecord/", {"q": search})
        assert found.status_code == 200 and b"asked by b" not in found.content
    mine = client.get(f"/admin/bootserve/bootrecord/{spread['a'].pk}/change/")
    assert mine.status_code == 200 and b"asked by a" in mine.content
    # Another site's record answers as a missing one does.
    assert client.get(f"/admin/bootserve/bootrecord/{spread['b'].pk}/change/").status_code == 302
    assert client.get("/admin/bootserve/bootrecord/add/").status_code == 403


# --- floods from many addresses, and what a waiting machine costs -----------------


def test_a_waiting_machines_polls_fold_into_one_row_whatever_their_round(client):
    """The iPXE wait loop counts its polls in ``round=``: not a new request each time."""
    make_node("pending", macs=[MAC])
    for poll in range(1, 7):
        ipxe(client, f"mac={MAC}&round={poll}")
    row = only()
    assert "round" not in row.asked and row.asked == f"/boot/ipxe?mac={MAC}"


def test_many_addresses_cannot_outgrow_the_process_cap_or_reset_a_flooders_cap(
    settings, monkeypatch
):
    settings.PUREBOOT_BOOT_RECORD_RATE = 2
    monkeypatch.setattr(records, "MAX_SOURCES", 4)
    monkeypatch.setattr(records, "MAX_ROWS_PER_MINUTE", 6)
    now = [1_000_000.0]
    monkeypatch.setattr(records.time, "monotonic", lambda: now[0])

    def boot(address: str, n: int):
        records.record_boot("tftp", "refused", address=address, asked=f"../{n}")

    for n in range(5):  # one address past its cap
        boot("10.0.0.1", n)
    assert BootRecord.objects.count() == 2
    for n in range(20):  # then many fresh addresses (spoofed sources)
        boot(f"10.9.{n // 250}.{n % 250}", n)
    # Three more addresses fit beside the first, and the process writes at most 6 a minute.
    assert BootRecord.objects.count() == 5
    boot("10.0.0.1", 99)  # the fresh addresses did not give the flooder a new cap
    assert BootRecord.objects.filter(client_address="10.0.0.1").count() == 2
    now[0] += 60  # a new minute: earlier addresses are forgotten, writing resumes
    boot("10.0.0.1", 100)
    latest = BootRecord.objects.filter(client_address="10.0.0.1").latest("id")
    assert latest.suppressed == 4  # 3 before the fresh ones, 1 after


def test_the_fast_path_records_the_client_behind_a_trusted_proxy(settings):
    settings.PUREBOOT_TRUSTED_PROXIES = ["127.0.0.1"]
    make_node("installed", macs=[MAC])
    environ = environ_for(f"mac={MAC}", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.0.0.77")
    assert fastpath.answer(environ) is not None
    assert only().client_address == "10.0.0.77"
    records.forget()
    BootRecord.objects.all().delete()
    # From an address that is not a trusted proxy, the header is not believed.
    untrusted = environ_for(f"mac={MAC}", REMOTE_ADDR="10.0.0.8", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert fastpath.answer(untrusted) is not None
    assert only().client_address == "10.0.0.8"


def test_direction_and_zero_width_characters_are_cleaned():
    records.record_boot("dhcp", "dhcp_lease", asked="vendor\u202eexe.cod\u200bx\u2066y\ufeff")
    assert only().asked == "vendor?exe.cod?x?y?"


def test_pruning_deletes_in_batches_and_keeps_the_recent(settings, monkeypatch):
    settings.PUREBOOT_BOOT_RECORD_DAYS = 7
    monkeypatch.setattr(records, "PRUNE_BATCH", 2)
    old = timezone.now() - timedelta(days=8)
    for _ in range(5):
        BootRecord.objects.create(protocol="http", outcome="wait", created=old, last_at=old)
    kept = BootRecord.objects.create(protocol="http", outcome="wait")
    assert records.prune() == 5
    assert list(BootRecord.objects.all()) == [kept]


def test_the_tftp_daemon_sends_its_helper_a_bounded_number_of_reports(tmp_path, monkeypatch):
    """Refused requests from spoofed sources must not fill the socket the configs use."""
    resolver = tftp_resolver.HelperResolver(tmp_path)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    monkeypatch.setattr(resolver, "_helper", lambda: ours)
    now = [500.0]
    monkeypatch.setattr(tftp_resolver.time, "monotonic", lambda: now[0])
    resolver._record_at = now[0]
    for n in range(5_000):
        resolver.record(tftp_resolver.refusal_record(f"10.{n % 200}.0.1", f"../{n}", "bad"))
    sent = tftp_resolver.RECORD_BURST
    assert resolver.records_dropped == 5_000 - sent
    now[0] += 1  # a second later the budget allows RECORDS_PER_SECOND more
    for n in range(100):
        resolver.record(tftp_resolver.refusal_record("10.0.0.1", f"../{n}", "bad"))
    assert resolver.records_dropped == 5_000 - sent + 100 - tftp_resolver.RECORDS_PER_SECOND
    # A machine's config request still goes through the same socket.
    ours.send(b'{"id": 1, "path": "pxelinux.cfg/default", "peer": ["10.0.0.2", 1]}')
    received = 0
    theirs.setblocking(False)
    while True:
        try:
            theirs.recv(65536)
        except BlockingIOError:
            break
        received += 1
    assert received == sent + tftp_resolver.RECORDS_PER_SECOND + 1
    ours.close()
    theirs.close()


def test_a_record_does_not_name_a_node_that_moved_to_a_site_the_user_cannot_see(
    client, site_a, site_b
):
    """The record stays at the site the request came from; the node's name does not follow."""
    node = make_node("installed", site=site_a, macs=[MAC], hostname="moved-away")
    ipxe(client)
    operator = make_user("Operator", sites=[site_a])
    client.force_login(operator)
    answer = client.get("/api/v1/boots").json()["results"]
    assert [(row["node"], row["node_name"]) for row in answer] == [(node.pk, "moved-away")]
    node.site = site_b
    node.save(update_fields=["site"])
    (row,) = client.get("/api/v1/boots").json()["results"]
    assert (row["node"], row["node_name"]) == (None, None)
    operator.is_staff = True
    operator.save()
    answer = client.get("/admin/bootserve/bootrecord/")
    assert answer.status_code == 200
    page = answer.content.decode()
    assert "10.0.0.5" in page and "moved-away" not in page
    assert client.get("/admin/bootserve/bootrecord/?q=moved-away").status_code == 200
