"""Credential API: metadata only; secrets are written here and never read back.

Creating, changing and deleting a credential are four-eye actions: each
answers 202 with an approval request (``?dry_run=1`` shows what it would
ask for); a second person's approval makes the change. Secrets in a request
stay sealed with the credential keys until then.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import viewsets
from rest_framework.permissions import IsAuthenticated

from approvals import services as approvals
from approvals.api.responses import ask, dry_run
from approvals.api.serializers import ApprovalRequestSerializer
from pureboot.api.permissions import ModelPermissions

from ..models import Credential
from .serializers import CredentialNameSerializer, CredentialSerializer


class CredentialPermissions(ModelPermissions):
    """Writes need the model permission; reads need metadata or names-only access."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        if request.method in {"GET", "HEAD", "OPTIONS"}:
            return _sees_metadata(user) or user.has_perm("credentials.view_credential_names")
        return super().has_permission(request, view)


def _sees_metadata(user) -> bool:
    return user.has_perm("credentials.view_credential")


class CredentialViewSet(viewsets.ModelViewSet):
    """Stored credentials. Operators list names and kinds only."""

    queryset = Credential.objects.all()
    serializer_class = CredentialSerializer
    permission_classes = (IsAuthenticated, CredentialPermissions)
    filterset_fields = ("kind", "name")
    ordering = ("name",)
    lookup_value_regex = r"\d{1,18}"
    http_method_names = ("get", "post", "patch", "delete", "head", "options")

    @property
    def ordering_fields(self) -> tuple[str, ...]:
        # Names-only readers cannot sort by what they may not see (it tells its order).
        request = getattr(self, "request", None)
        if request is not None and request.user and not _sees_metadata(request.user):
            return ("name", "kind")
        return ("name", "kind", "updated_at")

    def get_serializer_class(self):
        request = getattr(self, "request", None)
        if request is not None and request.user and not _sees_metadata(request.user):
            return CredentialNameSerializer
        return CredentialSerializer

    @extend_schema(responses={202: OpenApiResponse(ApprovalRequestSerializer)})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._ask(request, None, "credential.create", *serializer.split())

    @extend_schema(responses={202: OpenApiResponse(ApprovalRequestSerializer)})
    def partial_update(self, request, *args, **kwargs):
        credential = self.get_object()
        serializer = self.get_serializer(credential, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        return self._ask(request, credential, "credential.change", *serializer.split())

    @extend_schema(responses={202: OpenApiResponse(ApprovalRequestSerializer)})
    def destroy(self, request, *args, **kwargs):
        return self._ask(request, self.get_object(), "credential.delete", {}, {})

    def _ask(self, request, credential, kind: str, fields: dict, secrets: dict):
        return ask(
            lambda: approvals.request_credential(
                kind,
                request.user,
                credential,
                fields,
                secrets,
                reason=_reason(request),
                dry_run=dry_run(request),
            )
        )


def _reason(request) -> str:
    value = request.data.get("reason", "") if hasattr(request.data, "get") else ""
    return value if isinstance(value, str) else ""
