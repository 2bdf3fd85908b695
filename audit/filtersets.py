"""Filters for the audit trail API and admin."""

from __future__ import annotations

import django_filters

from pureboot.api.filters import SafeIsoDateTimeFilter

from .models import AuditEvent


class AuditEventFilterSet(django_filters.FilterSet):
    """Exact matches on who/what/which request, and a timestamp window."""

    since = SafeIsoDateTimeFilter(field_name="timestamp", lookup_expr="gte")
    until = SafeIsoDateTimeFilter(field_name="timestamp", lookup_expr="lte")

    class Meta:
        model = AuditEvent
        fields = ("object_type", "object_id", "actor", "action", "request_id")
