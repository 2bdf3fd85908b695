"""Approval requests over the API: list, detail, approve, reject, cancel."""

from __future__ import annotations

import django_filters
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from nodes.permissions import scope_nodes

from .. import services
from ..models import ApprovalRequest, Status
from .serializers import ApprovalRequestSerializer, DecideSerializer


class ApprovalFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Status.choices)
    action = django_filters.CharFilter(max_length=32)
    # A whole number in the range of a node id: anything else is a 400, not a
    # number the database cannot hold (a 500).
    node = django_filters.NumberFilter(
        field_name="node_id", min_value=1, max_value=10**18 - 1, decimal_places=0
    )
    mine = django_filters.BooleanFilter(method="filter_mine", label="Requested by me")
    awaiting_me = django_filters.BooleanFilter(
        method="filter_awaiting_me", label="Pending, not mine, not yet decided by me"
    )

    class Meta:
        model = ApprovalRequest
        fields = ("status", "action", "node")

    def filter_mine(self, queryset, name, value):
        user = self.request.user
        return queryset.filter(requested_by=user) if value else queryset.exclude(requested_by=user)

    def filter_awaiting_me(self, queryset, name, value):
        awaiting = services.awaiting(self.request.user)
        return queryset.filter(awaiting) if value else queryset.exclude(awaiting)


def _decide(func, *args):
    try:
        done = func(*args)
    except services.NotAllowed as exc:
        raise exceptions.PermissionDenied(str(exc)) from None
    except services.NotPending as exc:
        return Response(
            {"detail": str(exc), "code": "not_pending"}, status=status.HTTP_409_CONFLICT
        )
    except ValidationError as exc:
        raise exceptions.ValidationError(exc.message_dict) from None
    done = ApprovalRequest.objects.get(pk=done.pk)
    return Response(ApprovalRequestSerializer(done).data)


def _comment(request) -> str:
    data = DecideSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    return data.validated_data.get("comment", "")


class ApprovalRequestViewSet(viewsets.ReadOnlyModelViewSet):
    """Four-eye approval requests, newest first."""

    serializer_class = ApprovalRequestSerializer
    permission_classes = (IsAuthenticated,)
    filterset_class = ApprovalFilterSet
    lookup_value_regex = r"\d{1,18}"

    def get_queryset(self):
        return (
            services.visible_requests(self.request.user)
            .select_related("node", "requested_by")
            .prefetch_related("decisions__user")
            .distinct()
        )

    @extend_schema(request=DecideSerializer, responses=ApprovalRequestSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return _decide(services.approve, self.get_object().pk, request.user, _comment(request))

    @extend_schema(request=DecideSerializer, responses=ApprovalRequestSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return _decide(services.reject, self.get_object().pk, request.user, _comment(request))

    @extend_schema(request=None, responses=ApprovalRequestSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return _decide(services.cancel, self.get_object().pk, request.user)


class NodeApproveView(APIView):
    """``POST /api/v1/nodes/{id}/approve``: approve the pending request on that node."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(request=DecideSerializer, responses=ApprovalRequestSerializer)
    def post(self, request, pk: str):
        node = get_object_or_404(scope_nodes(request.user), pk=int(pk))
        pending = get_object_or_404(
            services.visible_requests(request.user), node=node, status=Status.PENDING
        )
        return _decide(services.approve, pending.pk, request.user, _comment(request))
