"""The audit trail API: read-only, and clearing only through an approved request."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action

from approvals import services as approvals
from approvals.api.responses import ask, dry_run
from approvals.api.serializers import ApprovalRequestSerializer

from .. import clearing
from ..filtersets import AuditEventFilterSet
from ..models import AuditEvent
from .permissions import CanViewAuditTrail
from .serializers import AuditEventSerializer


class ClearSerializer(serializers.Serializer):
    through_seq = serializers.IntegerField(min_value=1, help_text="The last event to clear.")
    reason = serializers.CharField(max_length=1000)


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

    @extend_schema(
        request=ClearSerializer, responses={202: OpenApiResponse(ApprovalRequestSerializer)}
    )
    @action(detail=False, methods=["post"])
    def clear(self, request):
        """Ask to export and delete events up to ``through_seq`` (a second person approves)."""
        body = ClearSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data

        def make():
            through = clearing.check_point(data["through_seq"])
            return approvals.request_other(
                "audit.clear",
                request.user,
                dry_run=dry_run(request),
                target_id="trail",
                target_label="the audit trail",
                params={"through_seq": through},
                reason=data["reason"],
            )

        return ask(make)
