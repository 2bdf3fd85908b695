"""Database-level protection of the audit table, and its one controlled bypass.

Migration 0002 installs triggers that refuse UPDATE, DELETE (and, on
PostgreSQL, TRUNCATE) on ``audit_auditevent``. They stand aside only while
:func:`unlocked` is active on the same connection:

- PostgreSQL: the session setting ``pureboot.audit_unlock = 'on'``;
- SQLite: the SQL function ``pureboot_audit_unlocked()``, registered on every
  connection Django opens, returns 1. A connection without the function
  (e.g. the ``sqlite3`` shell) cannot modify the table at all.

This guards against mistakes and application bugs, not against someone with
direct database access (who could drop the triggers); the hash chain is what
makes such tampering evident.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

# Attribute on Django's per-thread connection wrapper counting nested unlocked() blocks.
_DEPTH_ATTR = "_pureboot_audit_unlock_depth"


def _is_unlocked(wrapper: BaseDatabaseWrapper) -> int:
    return 1 if getattr(wrapper, _DEPTH_ATTR, 0) > 0 else 0


def register_sqlite_function(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """``connection_created`` receiver: give SQLite connections the unlock check."""
    if connection.vendor != "sqlite":
        return
    # The flag is per Django connection (so per thread and alias), like the
    # PostgreSQL session setting: unlocking in one thread unlocks nothing else.
    connection.connection.create_function(
        "pureboot_audit_unlocked", 0, lambda: _is_unlocked(connection)
    )


def _pg_execute(wrapper: BaseDatabaseWrapper, sql: str) -> None:
    with wrapper.cursor() as cursor:
        cursor.execute(sql)


@contextmanager
def unlocked(using: str = "default") -> Iterator[None]:
    """Let UPDATE/DELETE/TRUNCATE through to the audit table on this connection.

    Only for flushing test databases and for an approved audit-clearing
    export; never for editing events, which would break the hash chain.
    Blocks nest; the table locks again when the outermost one exits.
    """
    wrapper = connections[using]
    depth = getattr(wrapper, _DEPTH_ATTR, 0)
    if depth == 0 and wrapper.vendor == "postgresql":
        _pg_execute(wrapper, "SET pureboot.audit_unlock = 'on'")
    setattr(wrapper, _DEPTH_ATTR, depth + 1)
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        setattr(wrapper, _DEPTH_ATTR, depth)
        if depth == 0 and wrapper.vendor == "postgresql" and wrapper.connection is not None:
            try:
                _pg_execute(wrapper, "RESET pureboot.audit_unlock")
            except DatabaseError:
                # The block failed inside a transaction, which is now aborted;
                # its rollback also undoes the SET. Let the first error win.
                if not (failed and wrapper.in_atomic_block):
                    raise
