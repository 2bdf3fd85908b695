from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        # Registers the tasks by name, so on-commit tasks queued by name run
        # in-process in SQLite mode (eager Celery) too.
        from . import tasks  # noqa: F401
