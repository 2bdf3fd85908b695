from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    """Approval requests and approving; nothing is installed into other apps."""

    name = "approvals"
    verbose_name = "Approvals"
