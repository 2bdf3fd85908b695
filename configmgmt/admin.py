"""Config runs and Salt/Chef registrations in the admin: read-only, scoped to the user's sites."""

from django.contrib import admin

from audit.admin_mixins import ReadOnlyAdmin
from audit.admin_scope import HiddenFieldsAdminMixin
from nodes.permissions import scope_nodes

from .models import ConfigRun, Registration


@admin.register(ConfigRun)
class ConfigRunAdmin(HiddenFieldsAdminMixin, ReadOnlyAdmin, admin.ModelAdmin):
    """What each config_run step did, with the tool's (redacted) output."""

    list_display = ("id", "node", "tool", "status", "started_at", "finished_at")
    list_filter = ("tool", "status")
    search_fields = ("node__hostname",)
    readonly_fields = (
        "node",
        "workflow_run",
        "step",
        "tool",
        "status",
        "output",
        "started_at",
        "finished_at",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).filter(node__in=scope_nodes(request.user))


@admin.register(Registration)
class RegistrationAdmin(HiddenFieldsAdminMixin, ReadOnlyAdmin, admin.ModelAdmin):
    """Whether a node's Salt key is accepted / Chef node exists, and the last error."""

    list_display = ("name", "node", "system", "present", "preexisting", "error", "updated_at")
    list_filter = ("system", "present")
    search_fields = ("name", "node__hostname")
    readonly_fields = (
        "node",
        "system",
        "name",
        "present",
        "preexisting",
        "install_run",
        "error",
        "updated_at",
    )
    exclude = ("client_key_ciphertext",)
    hidden_fields = ("client_key_ciphertext",)

    def get_queryset(self, request):
        return super().get_queryset(request).filter(node__in=scope_nodes(request.user))
