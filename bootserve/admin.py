"""The boot records in the admin: read-only, scoped like the API."""

from __future__ import annotations

from django.contrib import admin

from audit.admin_mixins import ReadOnlyAdmin
from nodes.admin import SiteScopedFilter

from .models import BootRecord
from .records import scope_records


@admin.register(BootRecord)
class BootRecordAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Written only by the boot services; whoever may read nodes may read these, in scope."""

    list_display = (
        "created",
        "protocol",
        "client_address",
        "mac",
        "node",
        "outcome",
        "answer",
        "repeats",
        "suppressed",
    )
    list_filter = ("protocol", "outcome", ("site", SiteScopedFilter))
    search_fields = ("mac", "client_address", "asked", "node__hostname")
    list_select_related = ("node",)
    date_hierarchy = "created"
    show_full_result_count = False  # the table can be large; no COUNT(*) per page

    def get_queryset(self, request):
        return scope_records(request.user, super().get_queryset(request))

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.has_perm("nodes.view_node")

    def has_module_permission(self, request) -> bool:
        return self.has_view_permission(request)
