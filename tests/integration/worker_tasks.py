"""Test-only Celery tasks, loaded into the test worker with ``--include``.

They live here, not in an app's ``tasks.py``, so production workers never
register them. The test process sends them by name (``send_task``) and never
imports this module.
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="pureboot_tests.db_probe")
def db_probe(username: str) -> dict:
    """Report which database the worker uses and whether it sees ``username``."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    return {
        "database": connection.settings_dict["NAME"],
        "user_exists": get_user_model().objects.filter(username=username).exists(),
    }
