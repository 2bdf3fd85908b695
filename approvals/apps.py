from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"

    def ready(self) -> None:
        # Route every destructive node action through an approval request.
        from nodes import services as node_services

        from . import services

        node_services.install_approval_gate(services.request_transition, services.needs_approval)
