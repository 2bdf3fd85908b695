"""Approval requests in the admin: read-only; decisions go through the API and its rules."""

from django.contrib import admin

from audit.admin_scope import HiddenFieldsAdminMixin

from . import services
from .models import ApprovalRequest, Decision


class DecisionInline(admin.TabularInline):
    model = Decision
    extra = 0
    can_delete = False
    readonly_fields = ("user", "approve", "comment", "at")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(HiddenFieldsAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "action",
        "target_type",
        "target_label",
        "requested_by",
        "status",
        "expires_at",
    )
    list_filter = ("status", "action", "target_type")
    search_fields = ("target_label", "node__hostname", "requested_by__username", "reason")
    inlines = (DecisionInline,)
    # The sealed secrets of a credential request are never shown (nor filtered on).
    readonly_fields = [f.name for f in ApprovalRequest._meta.fields if f.name != "sealed"]
    exclude = ("sealed",)

    def get_queryset(self, request):
        # The same scope as the API and the approval pages: node requests of
        # the user's sites, other kinds for those who may decide them, one's own.
        return services.visible_requests(request.user).select_related("node", "requested_by")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
