from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class ApprovalsConfig(AppConfig):
    """Approval requests and approving.

    Apps above this one (hypervisors) declare the four-eye actions they own in
    an ``approval_kinds`` module, found here at start-up the way the admin
    finds ``admin.py``; nothing is installed into other apps.
    """

    name = "approvals"
    verbose_name = "Approvals"

    def ready(self) -> None:
        autodiscover_modules("approval_kinds")
