"""Filter fields shared by the API's filter sets."""

from __future__ import annotations

from datetime import UTC

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField


class SafeIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 date-time that must still be a valid date once converted to UTC.

    ``9999-12-31T23:59:59-23:59`` parses, but overflows when the database
    adapter converts it to UTC; refuse it here as a 400.
    """

    def to_python(self, value):
        result = super().to_python(value)
        if result is None:
            return None
        try:
            return result.astimezone(UTC) if result.tzinfo else result
        except (OverflowError, ValueError):
            raise forms.ValidationError("Date-time is out of range.", code="invalid") from None


class SafeIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = SafeIsoDateTimeField
