from django.apps import AppConfig


class AgentConfig(AppConfig):
    name = "agent"
    verbose_name = "Provisioning agent"

    def ready(self) -> None:
        from . import tasks  # noqa: F401  (nodes.services queues teardown by name; see bootserve)
        from .api import schema  # noqa: F401  (registers the OpenAPI auth extension)
