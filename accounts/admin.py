"""Audited admin for users and groups (role membership is security-relevant) and
emergency grants (read-only: they come from approved requests)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError

from approvals import services as approvals
from audit.admin_mixins import AuditedAdminMixin, ReadOnlyAdmin
from pureboot import gate

from . import services
from .models import EmergencyGrant
from .roles import ROLES

admin.site.unregister(User)
admin.site.unregister(Group)


class RolesUserChangeForm(UserChangeForm):
    roles = forms.MultipleChoiceField(
        choices=[(r, r) for r in ROLES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Giving a role that can approve (Admin, Operator, Auditor) waits for a "
        "second person once two people can approve; before that it is done on the host "
        "with manage.py grant_role. Removing roles takes effect at once.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["roles"].initial = sorted(services.roles_of(self.instance))


@admin.register(User)
class AuditedUserAdmin(AuditedAdminMixin, UserAdmin):
    """Users: roles change through :func:`accounts.services.set_roles` only.

    Group membership, direct permissions and the superuser and staff flags
    are shown, never edited here: each would make someone a second approver
    without a second person.
    """

    form = RolesUserChangeForm
    readonly_fields = ("is_staff", "is_superuser", "groups", "user_permissions", "last_login")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Roles", {"fields": ("roles", "is_active", "is_staff", "is_superuser", "groups")}),
        ("Direct permissions", {"fields": ("user_permissions",)}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change or "roles" not in form.changed_data:
            return
        try:
            services.set_roles(
                obj.pk,
                form.cleaned_data["roles"],
                f"user:{request.user.get_username()}",
                requester=request.user,
            )
        except gate.ApprovalRequired as exc:
            try:
                made = approvals.file(exc.proposal, request.user)
            except approvals.Refused as refusal:
                messages.error(request, f"Roles not changed: {refusal}")
                return
            messages.warning(
                request,
                f"Roles not changed yet: approval request #{made.pk} waits for a second "
                f"person until {made.expires_at:%Y-%m-%d %H:%M %Z}.",
            )
        except (gate.Forbidden, ValidationError) as exc:
            messages.error(
                request, f"Roles not changed: {'; '.join(getattr(exc, 'messages', [str(exc)]))}"
            )


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdminMixin, GroupAdmin):
    """Groups: a group's permissions come from the roles in code, never edited here."""

    readonly_fields = ("permissions",)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.name in ROLES:
            return False  # a role's group: deleting it breaks every sign-in that maps to it
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        # "Delete selected" with a role's group among them would answer a bare
        # 403: say which were refused and why, and delete the others.
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            _, name, description = actions["delete_selected"]
            actions[name] = (_delete_selected_except_roles, name, description)
        return actions


def _delete_selected_except_roles(modeladmin, request, queryset):
    roles = sorted(queryset.filter(name__in=ROLES).values_list("name", flat=True))
    if roles:
        messages.error(
            request,
            f"Not deleted: {', '.join(roles)}: a role's group is never deleted (every "
            "sign-in that maps to the role would break).",
        )
        queryset = queryset.exclude(name__in=ROLES)
        if not queryset.exists():
            return None
    return delete_selected(modeladmin, request, queryset)


@admin.register(EmergencyGrant)
class EmergencyGrantAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("user", "role", "starts_at", "ends_at", "ended_at", "ended_by", "request")
    list_filter = ("role",)
    search_fields = ("user__username",)
