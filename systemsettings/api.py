"""System settings over the API.

They change only through four-eye requests: ``PATCH /api/v1/settings/{key}``
answers 202 with the approval request (``?dry_run=1`` shows what it would ask for).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from approvals import services as approvals
from approvals.api.responses import ask, dry_run
from approvals.api.serializers import ApprovalRequestSerializer

from . import config

REASON = serializers.CharField(required=False, allow_blank=True, max_length=1000)


class SettingSerializer(serializers.Serializer):
    key = serializers.CharField(read_only=True)
    value = serializers.JSONField()
    default = serializers.JSONField(read_only=True)
    source = serializers.ChoiceField(choices=("environment", "database"), read_only=True)
    description = serializers.CharField(read_only=True)


class SettingChangeSerializer(serializers.Serializer):
    value = serializers.JSONField()
    reason = REASON


class SettingViewSet(viewsets.ViewSet):
    """Run-time system settings (the approval policy among them)."""

    permission_classes = (IsAuthenticated,)
    lookup_value_regex = r"[a-z_]{1,64}"

    def _check_view(self, request) -> None:
        if not request.user.has_perm("systemsettings.view_systemsetting"):
            raise exceptions.PermissionDenied("You may not see the system settings.")

    @extend_schema(responses=SettingSerializer(many=True))
    def list(self, request):
        self._check_view(request)
        return Response(SettingSerializer(config.current(), many=True).data)

    @extend_schema(responses=SettingSerializer)
    def retrieve(self, request, pk: str):
        self._check_view(request)
        found = [s for s in config.current() if s["key"] == pk]
        if not found:
            raise exceptions.NotFound(f"No setting {pk!r}; known: {', '.join(config.SETTINGS)}.")
        return Response(SettingSerializer(found[0]).data)

    @extend_schema(
        request=SettingChangeSerializer,
        responses={202: OpenApiResponse(ApprovalRequestSerializer)},
    )
    def partial_update(self, request, pk: str):
        self._check_view(request)
        if pk not in config.SETTINGS:
            raise exceptions.NotFound(f"No setting {pk!r}; known: {', '.join(config.SETTINGS)}.")
        body = SettingChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return ask(
            lambda: approvals.request_other(
                "setting.change",
                request.user,
                dry_run=dry_run(request),
                target_id=pk,
                target_label=pk,
                params={"value": config.clean(pk, body.validated_data["value"])},
                reason=body.validated_data.get("reason", ""),
            )
        )
