"""Read-only audit trail API."""

from __future__ import annotations

from rest_framework import viewsets

from ..filtersets import AuditEventFilterSet
from ..models import AuditEvent
from .permissions import CanViewAuditTrail
from .serializers import AuditEventSerializer


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit trail, newest first; one event is addressed by its seq."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    permission_classes = (CanViewAuditTrail,)
    ordering_fields = ("seq", "timestamp")
    ordering = ("-seq",)
    lookup_field = "seq"
    lookup_value_regex = r"\d{1,18}"
