"""System settings in the admin: read-only (they change through approved requests)."""

from django.contrib import admin

from audit.admin_mixins import ReadOnlyAdmin

from .models import SystemSetting


@admin.register(SystemSetting)
class SystemSettingAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("key", "value", "updated_at", "updated_by")
