"""Audit every add, change and delete made in the Django admin.

The admin already calls ``log_addition``/``log_change``/``log_deletions``
for each save; hooking those sends the same facts to the tamper-evident
trail, so user, group and site changes are on record too. Node edits do not
use this: they go through ``nodes.services``, which audits before/after
values itself.
"""

from __future__ import annotations

from django.db import transaction
from django.forms.models import model_to_dict

from audit import services as audit

_SKIP_FIELDS = {"password", "last_login"}


def _actor(request) -> str:
    return f"user:{request.user.get_username()}"


def _values(obj) -> dict:
    out = {}
    for name, value in model_to_dict(obj).items():
        if name in _SKIP_FIELDS:
            continue
        if isinstance(value, list | tuple):
            value = [getattr(item, "pk", item) for item in value]
        out[name] = value
    return out


class AuditedAdminMixin:
    """Mix into a ModelAdmin to record its changes in the audit trail."""

    def save_model(self, request, obj, form, change):
        if change:
            # Remember the stored values (many-to-many included) before saving.
            stored = type(obj)._default_manager.filter(pk=obj.pk).first()
            request._pureboot_before = _values(stored) if stored else {}
        super().save_model(request, obj, form, change)

    def _record(self, request, obj, verb: str, message) -> None:
        before = getattr(request, "_pureboot_before", {}) if verb == "update" else {}
        after = _values(obj) if verb != "delete" else {}
        if verb == "delete":
            changes = {}
        else:
            changes = {
                k: {"before": before.get(k), "after": after.get(k)}
                for k in sorted(set(before) | set(after))
                if before.get(k) != after.get(k)
            }
        with transaction.atomic():
            audit.record(
                actor=_actor(request),
                action=f"{obj._meta.model_name}.{verb}",
                object_type=obj._meta.label_lower,
                object_id=obj.pk,
                changes=changes,
                message=str(message)[:2000] if message else "",
                details={"via": "admin", "values": _values(obj) if verb != "delete" else {}},
            )

    def log_addition(self, request, obj, message):
        self._record(request, obj, "create", message)
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        self._record(request, obj, "update", message)
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            self._record(request, obj, "delete", f"Deleted {obj}")
        return super().log_deletions(request, queryset)


class ReadOnlyAdmin:
    """Mix into a ModelAdmin for records written only by services: view, never edit."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
