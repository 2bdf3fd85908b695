from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from .db import register_sqlite_function

        # SQLite's append-only triggers call this function (migration 0002).
        connection_created.connect(register_sqlite_function, dispatch_uid="audit_sqlite_unlock")
        # Registers the tasks by name (eager Celery in SQLite mode runs them in-process).
        from . import tasks  # noqa: F401
