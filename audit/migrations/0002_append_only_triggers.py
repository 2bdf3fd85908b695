"""Make audit_auditevent append-only in the database itself.

UPDATE and DELETE (and TRUNCATE on PostgreSQL) are refused with
'audit log is append-only' unless audit.db.unlocked() is active on the
connection. Note for future migrations: SQLite rebuilds a table to alter it,
which drops these triggers; such a migration must create them again.
"""

from django.db import migrations

MESSAGE = "audit log is append-only"

SQLITE_INSTALL = [
    f"""
    CREATE TRIGGER audit_auditevent_no_{op.lower()}
    BEFORE {op} ON audit_auditevent
    WHEN NOT pureboot_audit_unlocked()
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
    """
    for op in ("UPDATE", "DELETE")
]
SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_auditevent_no_update",
    "DROP TRIGGER IF EXISTS audit_auditevent_no_delete",
]

POSTGRES_INSTALL = [
    f"""
    CREATE OR REPLACE FUNCTION audit_auditevent_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF coalesce(current_setting('pureboot.audit_unlock', true), '') = 'on' THEN
            IF TG_LEVEL = 'STATEMENT' THEN RETURN NULL; END IF;
            IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
            RETURN NEW;
        END IF;
        RAISE EXCEPTION '{MESSAGE}';
    END;
    $$
    """,
    """
    CREATE TRIGGER audit_auditevent_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_auditevent_refuse_change()
    """,
    """
    CREATE TRIGGER audit_auditevent_no_truncate
    BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION audit_auditevent_refuse_change()
    """,
]
POSTGRES_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_auditevent_no_truncate ON audit_auditevent",
    "DROP TRIGGER IF EXISTS audit_auditevent_no_update_delete ON audit_auditevent",
    "DROP FUNCTION IF EXISTS audit_auditevent_refuse_change()",
]


def _run(schema_editor, statements_by_vendor):
    vendor = schema_editor.connection.vendor
    if vendor not in statements_by_vendor:
        raise RuntimeError(f"no append-only triggers for database vendor {vendor!r}")
    for sql in statements_by_vendor[vendor]:
        schema_editor.execute(sql)


def install(apps, schema_editor):
    _run(schema_editor, {"sqlite": SQLITE_INSTALL, "postgresql": POSTGRES_INSTALL})


def remove(apps, schema_editor):
    _run(schema_editor, {"sqlite": SQLITE_REMOVE, "postgresql": POSTGRES_REMOVE})


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_auditevent")]

    operations = [migrations.RunPython(install, remove)]
