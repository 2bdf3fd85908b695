"""Offline domain joins: read-only, scoped to the sites of their nodes; never the blob.

``POST /api/v1/offline-joins/{id}/remove-account`` asks for the join's
computer account to be deleted from Active Directory: a four-eye action that
answers 202 with the approval request (``?dry_run=1`` shows what it would
ask for); a second person's approval deletes it.
"""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated

from approvals import services as approvals
from approvals.api.responses import ask, dry_run
from approvals.api.serializers import ApprovalRequestSerializer
from nodes.permissions import scope_nodes
from pureboot.api.permissions import ModelPermissions
from pureboot.api.serializers import ErrorSerializer

from .. import domainjoin
from ..domainjoin_models import OfflineJoin, OfflineJoinStatus


class OfflineJoinSerializer(serializers.ModelSerializer):
    class Meta:
        model = OfflineJoin
        fields = (
            "id",
            "node",
            "run",
            "domain",
            "machine_name",
            "ou",
            "dc",
            "status",
            "error",
            "created_at",
            "ready_at",
            "served_at",
            "wiped_at",
            "account_removed_at",
        )
        read_only_fields = fields


class RemoveAccountSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class OfflineJoinFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=OfflineJoinStatus.choices)
    # Numbers, not choices: a choice list would name every node.
    node = django_filters.NumberFilter(
        field_name="node_id", min_value=1, max_value=10**18 - 1, decimal_places=0
    )
    run = django_filters.NumberFilter(
        field_name="run_id", min_value=1, max_value=10**18 - 1, decimal_places=0
    )

    class Meta:
        model = OfflineJoin
        fields = ("status", "node", "run")


class OfflineJoinViewSet(viewsets.ReadOnlyModelViewSet):
    """Computer accounts PureBoot prestaged for offline domain joins, newest first."""

    queryset = OfflineJoin.objects.none()  # the model, for permissions and the schema
    serializer_class = OfflineJoinSerializer
    permission_classes = (IsAuthenticated, ModelPermissions)
    filterset_class = OfflineJoinFilterSet
    ordering_fields = ("created_at",)
    ordering = ("-created_at",)
    lookup_value_regex = r"\d{1,18}"

    def get_queryset(self):
        return OfflineJoin.objects.filter(node__in=scope_nodes(self.request.user)).order_by(
            "-created_at", "-id"
        )

    def get_permissions(self):
        if self.action == "remove_account":
            # Asking needs workflows.remove_computer_account (checked by approvals).
            return [IsAuthenticated()]
        return super().get_permissions()

    @extend_schema(
        request=RemoveAccountSerializer,
        responses={
            202: OpenApiResponse(
                ApprovalRequestSerializer,
                description="approval request filed: a second person must approve "
                "(code approval_required); with ?dry_run=1, 200 and what it would ask",
            ),
            400: OpenApiResponse(description="invalid input, or the account is already removed"),
            403: OpenApiResponse(ErrorSerializer, description="no permission to ask"),
            404: OpenApiResponse(ErrorSerializer, description="not found among what you may see"),
            409: OpenApiResponse(ErrorSerializer, description="a request is already pending"),
        },
    )
    @action(detail=True, methods=["post"], url_path="remove-account")
    def remove_account(self, request, pk=None):
        join = self.get_object()
        data = RemoveAccountSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if join.account_removed_at:
            raise serializers.ValidationError(
                {"detail": f"{join.machine_name}'s computer account was already removed."}
            )
        return ask(
            lambda: approvals.request_other(
                domainjoin.REMOVE_ACTION,
                request.user,
                dry_run=dry_run(request),
                target_id=str(join.pk),
                target_label=f"{join.machine_name} in {join.domain}",
                params={"node": join.node_id, "machine": join.machine_name, "domain": join.domain},
                reason=data.validated_data["reason"],
            )
        )
