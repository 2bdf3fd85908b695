"""System settings and emergency access over the API.

Both change only through four-eye requests: ``PATCH /api/v1/settings/{key}``
and ``POST /api/v1/emergency-access`` answer 202 with the approval request
(``?dry_run=1`` shows what it would ask for).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Q
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from approvals import services as approvals
from approvals.api.responses import ask, dry_run
from approvals.api.serializers import ApprovalRequestSerializer

from .. import config, emergency
from ..models import EmergencyGrant
from ..roles import ROLES

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
        if not request.user.has_perm("pureboot.view_systemsetting"):
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


class GrantSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True)
    active = serializers.SerializerMethodField()

    class Meta:
        model = EmergencyGrant
        fields = ("id", "user", "role", "starts_at", "ends_at", "ended_at", "ended_by", "request")
        fields = (*fields, "active")
        read_only_fields = fields

    def get_active(self, obj) -> bool:
        from django.utils import timezone

        return obj.ended_at is None and obj.starts_at <= timezone.now() < obj.ends_at


class AccessRequestSerializer(serializers.Serializer):
    user = serializers.CharField(
        required=False, max_length=150, help_text="Whose access; yourself when left out."
    )
    role = serializers.ChoiceField(choices=sorted(ROLES))
    hours = serializers.IntegerField(min_value=1, max_value=72)
    reason = serializers.CharField(max_length=1000)


class EmergencyAccessViewSet(viewsets.ReadOnlyModelViewSet):
    """Emergency access: ask for a role for a few hours; a second person approves."""

    serializer_class = GrantSerializer
    permission_classes = (IsAuthenticated,)
    lookup_value_regex = r"\d{1,18}"

    def get_queryset(self):
        user = self.request.user
        grants = EmergencyGrant.objects.select_related("user")
        if getattr(self, "swagger_fake_view", False) or not user.is_authenticated:
            return grants.none()
        if user.has_perm("pureboot.view_emergencygrant"):
            return grants
        return grants.filter(Q(user=user) | Q(request__requested_by=user))

    @extend_schema(
        request=AccessRequestSerializer,
        responses={202: OpenApiResponse(ApprovalRequestSerializer)},
    )
    def create(self, request):
        body = AccessRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        name = data.get("user") or request.user.get_username()
        target = get_user_model().objects.filter(username=name).first()
        if target is None:
            raise exceptions.ValidationError({"user": f"No user {name!r}."})
        # For oneself, the request permission; for someone else, the grant permission.
        permission = (
            "pureboot.request_emergency_access"
            if target.pk == request.user.pk
            else "pureboot.grant_emergency_access"
        )

        def make():
            role, hours = emergency.clean_request(target, data["role"], data["hours"])
            return approvals.request_other(
                "access.grant",
                request.user,
                dry_run=dry_run(request),
                permission=permission,
                target_id=str(target.pk),
                target_label=target.get_username(),
                params={"role": role, "hours": hours},
                reason=data["reason"],
            )

        return ask(make)

    @extend_schema(request=None, responses=GrantSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        grant = self.get_object()
        user = request.user
        if grant.user_id != user.pk and not user.has_perm("pureboot.grant_emergency_access"):
            raise exceptions.PermissionDenied("Only its holder or an administrator ends a grant.")
        if not emergency.revoke(grant.pk, f"user:{user.get_username()}"):
            return Response(
                {"detail": "This grant has already ended.", "code": "ended"}, status=409
            )
        grant.refresh_from_db()
        return Response(GrantSerializer(grant).data)
