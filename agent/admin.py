"""The agent's jobs, their logs and the wipe certificates in the admin: read-only, scoped."""

from django.contrib import admin
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html

from audit.admin_mixins import ReadOnlyAdmin
from audit.admin_scope import HiddenFieldsAdminMixin
from nodes.models import Migration
from nodes.permissions import scope_nodes

from .models import AgentJob, AgentLogLine, WipeCertificate


class LogLineInline(admin.TabularInline):
    model = AgentLogLine
    fields = ("timestamp", "line")
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0
    ordering = ("-id",)


@admin.register(AgentJob)
class AgentJobAdmin(HiddenFieldsAdminMixin, ReadOnlyAdmin, admin.ModelAdmin):
    """Where each job is or stopped: its steps, heartbeat and error."""

    list_display = ("id", "node", "kind", "status", "where", "last_heartbeat_at", "created_at")
    list_filter = ("kind", "status")
    search_fields = ("node__hostname",)
    readonly_fields = (
        "node",
        "kind",
        "run",
        "status",
        "where",
        "steps",
        "error",
        "heartbeat",
        "last_heartbeat_at",
        "created_at",
        "finished_at",
    )
    exclude = ("params", "episode")
    inlines = (LogLineInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).filter(node__in=scope_nodes(request.user))


@admin.register(WipeCertificate)
class WipeCertificateAdmin(HiddenFieldsAdminMixin, ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("uuid", "node", "disk_model", "disk_serial", "method", "category", "page")
    list_filter = ("method", "category")
    search_fields = ("disk_serial", "node__hostname")
    readonly_fields = (
        "uuid",
        "node",
        "disk_model",
        "disk_serial",
        "method",
        "category",
        "document",
        "signature",
        "key_id",
        "created_at",
    )
    exclude = ("job",)

    def get_queryset(self, request):
        return super().get_queryset(request).filter(node__in=scope_nodes(request.user))

    @admin.display(description="certificate")
    def page(self, obj):
        url = reverse("wipecertificate-html", kwargs={"uuid": obj.uuid})
        return format_html('<a href="{}">view / print</a>', url)


@admin.register(Migration)
class MigrationAdmin(HiddenFieldsAdminMixin, ReadOnlyAdmin, admin.ModelAdmin):
    """1:1 hardware migrations: who moves where, how far, and the checksums."""

    list_display = ("id", "source", "target", "status", "requested_by", "created_at")
    list_filter = ("status",)
    search_fields = ("source__hostname", "target__hostname")
    readonly_fields = Migration.PUBLIC_FIELDS
    exclude = ("chap_secret",)

    def get_queryset(self, request):
        nodes = scope_nodes(request.user)
        qs = super().get_queryset(request)
        return qs.filter(Q(source__in=nodes) | Q(target__in=nodes)).distinct()
