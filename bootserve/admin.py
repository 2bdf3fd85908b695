"""The boot records in the admin: read-only, scoped like the API."""

from __future__ import annotations

from django.contrib import admin

from audit.admin_mixins import ReadOnlyAdmin
from audit.admin_scope import HiddenFieldsAdminMixin
from nodes.admin import SiteScopedFilter

from .models import BootRecord
from .records import scope_records, with_node_shown


@admin.register(BootRecord)
class BootRecordAdmin(HiddenFieldsAdminMixin, ReadOnlyAdmin, admin.ModelAdmin):
    """Written only by the boot services; whoever may read nodes may read these, in scope."""

    list_display = (
        "created",
        "protocol",
        "client_address",
        "mac",
        "machine",
        "outcome",
        "answer",
        "repeats",
        "suppressed",
    )
    list_filter = ("protocol", "outcome", ("site", SiteScopedFilter))
    # Not by the node's name: a node moved to another site keeps its records here.
    search_fields = ("mac", "client_address", "asked")
    list_select_related = ("node",)
    date_hierarchy = "created"
    show_full_result_count = False  # the table can be large; no COUNT(*) per page

    def get_queryset(self, request):
        return with_node_shown(
            request.user, scope_records(request.user, super().get_queryset(request))
        )

    exclude = ("node",)
    readonly_fields = ("machine",)

    @admin.display(description="node")
    def machine(self, obj: BootRecord) -> str:
        """The node's name while the viewer may see the node (it may have moved since)."""
        return str(obj.node) if getattr(obj, "node_shown", False) else "-"

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.has_perm("nodes.view_node")

    def has_module_permission(self, request) -> bool:
        return self.has_view_permission(request)
