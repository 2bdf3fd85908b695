"""django-filter sets for the node API (and anything else that lists nodes)."""

import django_filters

from pureboot.api.filters import SafeIsoDateTimeFilter

from .choices import Arch, Firmware, NodeState
from .identifiers import normalize_mac
from .models import Node, NodeEvent


class NodeFilterSet(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=NodeState.choices)
    site = django_filters.CharFilter(field_name="site__slug", max_length=100)
    tag = django_filters.CharFilter(field_name="tags__name", max_length=64)
    mac = django_filters.CharFilter(method="filter_mac", max_length=32)
    serial = django_filters.CharFilter(max_length=128)
    arch = django_filters.ChoiceFilter(choices=Arch.choices)
    firmware = django_filters.ChoiceFilter(choices=Firmware.choices)
    hostname = django_filters.CharFilter(lookup_expr="icontains", max_length=253)
    workflow = django_filters.CharFilter(field_name="workflow__name", max_length=100)

    class Meta:
        model = Node
        fields = ("state", "site", "tag", "mac", "serial", "arch", "firmware", "hostname")

    def filter_mac(self, queryset, name, value):
        try:
            mac = normalize_mac(value)
        except ValueError:
            return queryset.none()
        return queryset.filter(interfaces__mac=mac)

    def filter_queryset(self, queryset):
        # Filtering by tag joins a many-to-many table; keep one row per node.
        qs = super().filter_queryset(queryset)
        return qs.distinct() if self.form.cleaned_data.get("tag") else qs


class NodeEventFilterSet(django_filters.FilterSet):
    kind = django_filters.CharFilter(max_length=16)
    since = SafeIsoDateTimeFilter(field_name="timestamp", lookup_expr="gte")
    until = SafeIsoDateTimeFilter(field_name="timestamp", lookup_expr="lte")

    class Meta:
        model = NodeEvent
        fields = ("kind", "since", "until")
