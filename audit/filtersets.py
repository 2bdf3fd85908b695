"""Filters for the audit trail API and admin."""

from __future__ import annotations

import django_filters

from .models import AuditEvent


class AuditEventFilterSet(django_filters.FilterSet):
    """Exact matches on who/what/which request, and a timestamp window."""

    since = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="lte")

    class Meta:
        model = AuditEvent
        fields = ("object_type", "object_id", "actor", "action", "request_id")
