"""Audited admin for users and groups (role membership is security-relevant) and
emergency grants (read-only: they come from approved requests)."""

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User

from audit.admin_mixins import AuditedAdminMixin, ReadOnlyAdmin

from .models import EmergencyGrant

admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedAdminMixin, UserAdmin):
    pass


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdminMixin, GroupAdmin):
    pass


@admin.register(EmergencyGrant)
class EmergencyGrantAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("user", "role", "starts_at", "ends_at", "ended_at", "ended_by", "request")
    list_filter = ("role",)
    search_fields = ("user__username",)
