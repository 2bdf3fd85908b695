"""Filters for the webhook deliveries list."""

from __future__ import annotations

import django_filters

from .choices import DeliveryStatus
from .models import Delivery


class DeliveryFilterSet(django_filters.FilterSet):
    """By subscription (id), status and event type."""

    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)

    class Meta:
        model = Delivery
        fields = ("subscription", "status", "event_type", "audit_seq")
