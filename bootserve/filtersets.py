"""django-filter sets for the boot record API and admin."""

from __future__ import annotations

import django_filters
from django import forms

from nodes.identifiers import normalize_mac
from pureboot.api.filters import SafeIsoDateTimeFilter

from .models import BootRecord, Outcome, Protocol


class MacField(forms.CharField):
    """A MAC address in any usual spelling, normalised; anything else is a 400."""

    def to_python(self, value):
        value = super().to_python(value)
        if not value:
            return value
        try:
            return normalize_mac(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None


class MacFilter(django_filters.CharFilter):
    field_class = MacField


class IdFilter(django_filters.Filter):
    field_class = forms.IntegerField


class BootRecordFilterSet(django_filters.FilterSet):
    """By node, MAC, protocol, outcome, and records created since a moment."""

    node = IdFilter(field_name="node", min_value=1, max_value=2**63 - 1)
    mac = MacFilter(max_length=32)
    protocol = django_filters.ChoiceFilter(choices=Protocol.choices)
    outcome = django_filters.MultipleChoiceFilter(choices=Outcome.choices)
    since = SafeIsoDateTimeFilter(field_name="created", lookup_expr="gte")

    class Meta:
        model = BootRecord
        fields = ("node", "mac", "protocol", "outcome", "since")
