"""Emergency access over the API.

``POST /api/v1/emergency-access`` answers 202 with the approval request
(``?dry_run=1`` shows what it would ask for).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from approvals import services as approvals
from approvals.api.responses import ask, dry_run
from approvals.api.serializers import ApprovalRequestSerializer

from .. import emergency
from ..models import EmergencyGrant
from ..roles import ROLES


class GrantSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True)
    active = serializers.SerializerMethodField()

    class Meta:
        model = EmergencyGrant
        fields = ("id", "user", "role", "starts_at", "ends_at", "ended_at", "ended_by", "request")
        fields = (*fields, "active")
        read_only_fields = fields

    def get_active(self, obj) -> bool:
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
        if user.has_perm("accounts.view_emergencygrant"):
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
        # For oneself, the request permission; for someone else, the grant permission.
        own = name == request.user.get_username()
        permission = (
            "accounts.request_emergency_access" if own else "accounts.grant_emergency_access"
        )
        if not request.user.has_perm(permission):
            # Refused before the name is looked up: whether such an account
            # exists, or is disabled, is not told to someone who may not ask.
            raise exceptions.PermissionDenied(
                "You do not have permission to ask: Emergency access."
                if own
                else "You may ask for emergency access only for yourself."
            )
        target = get_user_model().objects.filter(username=name).first()
        if target is None:
            raise exceptions.ValidationError({"user": f"No user {name!r}."})

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
        if grant.user_id != user.pk and not user.has_perm("accounts.grant_emergency_access"):
            raise exceptions.PermissionDenied("Only its holder or an administrator ends a grant.")
        if not emergency.revoke(grant.pk, f"user:{user.get_username()}"):
            return Response(
                {"detail": "This grant has already ended.", "code": "ended"}, status=409
            )
        grant.refresh_from_db()
        return Response(GrantSerializer(grant).data)
