from django.apps import AppConfig


class BootserveConfig(AppConfig):
    name = "bootserve"

    def ready(self) -> None:
        # Registered in every process: nodes.services queues it by name, and the
        # embedded default (no Redis) runs it in-process.
        from . import tasks  # noqa: F401
