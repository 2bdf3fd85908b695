"""Thin Celery tasks of the agent app."""

from celery import shared_task

from . import migration, services


@shared_task(name="agent.fail_lost_jobs")
def fail_lost_jobs() -> list[int]:
    return services.fail_lost_jobs()


@shared_task(name="agent.teardown_migration")
def teardown_migration(migration_id: int) -> bool:
    """Remove an ended migration's iSCSI LUN (queued by nodes.services on commit)."""
    return migration.teardown(migration_id)


@shared_task(name="agent.check_migration_copy")
def check_migration_copy(migration_id: int) -> str:
    """Hash a migration's copy on the controller (queued when the source reports it)."""
    return migration.check_copy(migration_id)


@shared_task(name="agent.sweep_migration_luns")
def sweep_migration_luns() -> list[int]:
    """Remove LUNs that outlived their migration (periodic)."""
    return migration.sweep()
