"""The boot fast path's reads and its one write, as plain SQL on Django's connection.

Building an ORM query costs more than answering the request (about 0.6 ms
against 20 us for the same SELECT), so the fast path runs hand-written SQL
whose table and column names come from the models' metadata, on Django's
own database connection (its settings, its autocommit, its transaction when
there is one). While Django records queries (DEBUG, a test's query count)
or an execute wrapper is installed, the statements go through Django's
cursor and are seen like any other; otherwise through the driver's cursor
directly, which saves Django's per-statement wrapping (paramstyle rewrite,
error translation), about a third of the statement's cost.

``seen`` matches a node exactly as ``bootserve.services.find_node`` does (any
presented MAC, SMBIOS UUID or Pi serial; the lowest id wins) and reads the
facts ``engine.decide`` needs from the current database state.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from datetime import timedelta
from functools import cache

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.utils import timezone

from nodes.choices import Firmware
from nodes.models import NetworkInterface, Node
from workflows.models import WorkflowVersion

from .engine import Client, NodeFacts
from .install import is_diskless_task, pxe_boot_task

log = logging.getLogger(__name__)
_UUID = Node._meta.get_field("system_uuid")


COLUMNS = ("id", "hostname", "state", "arch", "firmware", "install_attempts", "site")


def _col(model, field: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(field).column)


@cache
def _select(vendor: str, native: bool, macs: int, uuid: bool, serial: bool) -> str:
    """The SELECT for this shape of request (8 x 2 x 2 shapes at most per backend).

    ``native``: in the driver's parameter style rather than Django's ``%s``.
    """
    quote = connection.ops.quote_name
    node, iface = quote(Node._meta.db_table), quote(NetworkInterface._meta.db_table)
    version = quote(WorkflowVersion._meta.db_table)
    node_id, seen_at = _col(Node, "id"), _col(Node, "last_seen_at")
    matches = []
    if macs:
        marks = ", ".join(["%s"] * macs)
        matches.append(
            f"SELECT i.{_col(NetworkInterface, 'node')} FROM {iface} i "
            f"WHERE i.{_col(NetworkInterface, 'mac')} IN ({marks})"
        )
    if uuid:
        matches.append(f"SELECT u.{node_id} FROM {node} u WHERE u.{_col(Node, 'system_uuid')} = %s")
    if serial:
        matches.append(
            f"SELECT s.{node_id} FROM {node} s "
            f"WHERE s.{_col(Node, 'serial')} = %s AND s.{_col(Node, 'firmware')} = %s"
        )
    columns = ", ".join(f"n.{_col(Node, name)}" for name in COLUMNS)
    # Any presented identifier matches; the lowest id wins (find_node's order).
    # The pinned workflow version comes along: it says whether the node can install.
    if macs and not (uuid or serial):  # the usual request: a plain join does
        nodes = f"{iface} i JOIN {node} n ON n.{node_id} = i.{_col(NetworkInterface, 'node')}"
        where = f"i.{_col(NetworkInterface, 'mac')} IN ({marks})"
    else:
        nodes, where = f"{node} n", f"n.{node_id} IN ({' UNION ALL '.join(matches)})"
    sql = (
        f"SELECT {columns}, v.{_col(WorkflowVersion, 'definition')}, "
        f"CASE WHEN n.{seen_at} IS NULL OR n.{seen_at} < %s THEN 1 ELSE 0 END, "
        f"CASE WHEN n.{_col(Node, 'inventory_at')} IS NULL THEN 1 ELSE 0 END "
        f"FROM {nodes} LEFT JOIN {version} v "
        f"ON v.{_col(WorkflowVersion, 'id')} = n.{_col(Node, 'workflow_version')} "
        f"WHERE {where} ORDER BY n.{node_id} LIMIT 1"
    )
    return _paramstyle(sql, vendor, native)


def _touch(vendor: str, native: bool, count: int) -> str:
    node = connection.ops.quote_name(Node._meta.db_table)
    marks = ", ".join(["%s"] * count)
    sql = (
        f"UPDATE {node} SET {_col(Node, 'last_seen_at')} = %s WHERE {_col(Node, 'id')} IN ({marks})"
    )
    return _paramstyle(sql, vendor, native)


def _paramstyle(sql: str, vendor: str, native: bool) -> str:
    # The statements hold no literal %; sqlite3 takes ?, psycopg %s.
    return sql.replace("%s", "?") if native and vendor == "sqlite" else sql


def _cursor(db):
    """Django's cursor while it records or wraps queries, else the driver's."""
    if db.queries_logged or db.execute_wrappers:
        return db.cursor(), False
    if db.connection is None:
        db.ensure_connection()
    return db.connection.cursor(), True


def seen(client: Client, *, last_seen_seconds: int) -> NodeFacts | None:
    """The decision facts of the machine ``client`` is, and note that it was seen now.

    None for an unknown machine. One indexed SELECT; when ``last_seen_at`` is
    older than ``last_seen_seconds`` (PUREBOOT_LAST_SEEN_SECONDS, the rule
    ``services.handle_boot`` follows) it is refreshed, by a second statement
    or with the worker's next batch (``_seen_now``). Nothing is cached: each
    answer is decided from the database as it is.
    """
    db = connections[DEFAULT_DB_ALIAS]
    params: list = [_cutoff(db, last_seen_seconds), *client.macs]
    if client.uuid:
        params.append(_UUID.get_db_prep_value(client.uuid, db))
    if client.serial:
        params += [client.serial, Firmware.PI.value]
    vendor = db.vendor
    cursor, native = _cursor(db)
    try:
        shape = (len(client.macs), bool(client.uuid), bool(client.serial))
        cursor.execute(_select(vendor, native, *shape), params)
        row = cursor.fetchone()
        if row is None:
            return None
        pk, hostname, state, arch, firmware, attempts, site_id, definition, stale, no_inventory = (
            row
        )
        if stale:
            _seen_now(db, cursor, native, pk)
    finally:
        cursor.close()
    parsed = _json(definition) if definition is not None else None
    task = pxe_boot_task(parsed) if parsed is not None else None
    return NodeFacts(
        id=pk,
        name=hostname or f"node-{pk}",
        state=state,
        arch=arch,
        firmware=firmware,
        install_attempts=attempts,
        can_install=task is not None,
        needs_inventory=bool(no_inventory),
        workflow_arches=workflow_arches(parsed) if parsed is not None else (),
        diskless=is_diskless_task(task),
        site_id=site_id,
    )


def workflow_arches(definition: dict) -> tuple[str, ...]:
    """The architectures a workflow definition is for, as the decision engine takes them."""
    arches = definition.get("arch") if isinstance(definition, dict) else None
    return tuple(a for a in arches if isinstance(a, str)) if isinstance(arches, list) else ()


# last_seen_at writes are batched per worker: a node seen less than
# FLUSH_SECONDS after this worker's last write waits for its next one, which
# comes after FLUSH_SECONDS or FLUSH_SIZE nodes (small, so that no single
# write holds the worker long), or when the worker exits. In a boot storm of
# first contacts a worker then commits a few times a second instead of once
# per machine. Inside a transaction (tests, the Django path) the write is
# immediate.
FLUSH_SECONDS = 1.0
FLUSH_SIZE = 100
_pending: set[int] = set()
_flushed_at = [-FLUSH_SECONDS]
_pending_db: list = [None]
_lock = threading.Lock()


_CUTOFF: list = [None, None]


def _cutoff(db, seconds: int):
    """``now - seconds`` as the database takes it; the same for a whole second."""
    key = (int(time.time()), seconds, db.vendor)
    if _CUTOFF[0] != key:
        cutoff = timezone.now() - timedelta(seconds=seconds)
        _CUTOFF[:] = [key, db.ops.adapt_datetimefield_value(cutoff)]
    return _CUTOFF[1]


def _seen_now(db, cursor, native: bool, pk: int) -> None:
    with _lock:
        if _pending_db[0] != db.settings_dict["NAME"]:
            _pending.clear()  # noted against another database (tests switch): not ours
            _pending_db[0] = db.settings_dict["NAME"]
        _pending.add(pk)
        due = (
            db.in_atomic_block
            or len(_pending) >= FLUSH_SIZE
            or time.monotonic() - _flushed_at[0] >= FLUSH_SECONDS
        )
        if not due:
            return
        ids = sorted(_pending)
        _pending.clear()
        _flushed_at[0] = time.monotonic()
    now = db.ops.adapt_datetimefield_value(timezone.now())
    cursor.execute(_touch(db.vendor, native, len(ids)), [now, *ids])


def flush_seen() -> None:
    """Write the last_seen_at updates this worker still holds (at exit)."""
    with _lock:
        ids = sorted(_pending)
        _pending.clear()
    if not ids or connection.settings_dict["NAME"] != _pending_db[0]:
        return
    try:
        with connection.cursor() as cursor:
            now = connection.ops.adapt_datetimefield_value(timezone.now())
            cursor.execute(_touch(connection.vendor, False, len(ids)), [now, *ids])
    except DatabaseError:
        log.warning("boot fast path: %d last_seen_at updates lost", len(ids), exc_info=True)


atexit.register(flush_seen)


def _json(value):
    # Drivers hand JSON columns over as text (Django decodes them itself).
    return json.loads(value) if isinstance(value, str | bytes) else value
