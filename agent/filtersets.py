"""django-filter sets for the agent's lists.

Nodes are filtered by id (a number field), never by a choice of nodes: a
choice field would list every node's name in the browsable API's form,
whatever the reader may see.
"""

import django_filters

from nodes.models import Migration

from .choices import JobKind, JobStatus
from .models import AgentJob, WipeCertificate


class AgentJobFilterSet(django_filters.FilterSet):
    node = django_filters.NumberFilter(field_name="node_id", min_value=1, max_value=10**18)
    kind = django_filters.ChoiceFilter(choices=JobKind.choices)
    status = django_filters.ChoiceFilter(choices=JobStatus.choices)

    class Meta:
        model = AgentJob
        fields = ("node", "kind", "status")


class WipeCertificateFilterSet(django_filters.FilterSet):
    node = django_filters.NumberFilter(field_name="node_id", min_value=1, max_value=10**18)
    method = django_filters.CharFilter(max_length=32)
    category = django_filters.CharFilter(max_length=8)
    disk_serial = django_filters.CharFilter(max_length=128)

    class Meta:
        model = WipeCertificate
        fields = ("node", "method", "category", "disk_serial")


class MigrationFilterSet(django_filters.FilterSet):
    source = django_filters.NumberFilter(field_name="source_id", min_value=1, max_value=10**18)
    target = django_filters.NumberFilter(field_name="target_id", min_value=1, max_value=10**18)
    status = django_filters.ChoiceFilter(choices=Migration.Status.choices)

    class Meta:
        model = Migration
        fields = ("source", "target", "status")
