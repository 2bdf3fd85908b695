from django.contrib import admin

from pureboot.admin_audit import AuditedAdminMixin

from .models import Workflow


@admin.register(Workflow)
class WorkflowAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "description", "created_at")
    search_fields = ("name", "description")
