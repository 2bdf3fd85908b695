from django.apps import AppConfig


class HypervisorsConfig(AppConfig):
    name = "hypervisors"
    verbose_name = "Hypervisors"

    def ready(self) -> None:
        # Registers the tasks by name, so on-commit tasks queued by name run
        # in-process in SQLite mode (eager Celery) too.
        from . import tasks  # noqa: F401
