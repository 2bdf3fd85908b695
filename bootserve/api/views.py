"""The boot record API: read-only, scoped to the sites the user may see."""

from __future__ import annotations

from rest_framework import viewsets
from rest_framework.permissions import IsAuthenticated

from pureboot.api.permissions import ModelPermissions

from ..filtersets import BootRecordFilterSet
from ..models import BootRecord
from ..records import scope_records, with_node_shown
from .serializers import BootRecordSerializer


class CanViewNodes(ModelPermissions):
    """Boot records are node history: whoever may read nodes may read them (in scope)."""

    perms_map = {method: ["nodes.view_node"] for method in ModelPermissions.perms_map}


class BootRecordViewSet(viewsets.ReadOnlyModelViewSet):
    """Boot requests and their answers (TFTP, HTTP, DHCP), newest first.

    A user sees the records of the sites they may see; records without a site
    (unknown machines, nodes without a site) only those who see every site.
    """

    serializer_class = BootRecordSerializer
    filterset_class = BootRecordFilterSet
    permission_classes = (IsAuthenticated, CanViewNodes)
    ordering_fields = ("id", "created", "last_at")
    ordering = ("-created", "-id")
    lookup_value_regex = r"\d{1,18}"

    def get_queryset(self):
        qs = BootRecord.objects.select_related("node")
        return with_node_shown(self.request.user, scope_records(self.request.user, qs))
