"""Read-only admin for the audit trail: it can be searched, never edited."""

from __future__ import annotations

from django.contrib import admin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("seq", "timestamp", "actor", "action", "target", "source_ip")
    list_filter = ("action", "object_type")
    search_fields = ("actor", "object_id", "request_id")
    ordering = ("-seq",)
    # COUNT(*) over a long trail is slow and adds nothing to a search.
    show_full_result_count = False
    readonly_fields = tuple(f.name for f in AuditEvent._meta.fields)

    @admin.display(description="object")
    def target(self, obj: AuditEvent) -> str:
        return f"{obj.object_type}:{obj.object_id}" if obj.object_type else ""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
