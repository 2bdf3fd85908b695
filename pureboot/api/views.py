"""Credential API: metadata only; secrets are written here and never read back."""

from __future__ import annotations

from django.db import IntegrityError
from django.http import Http404
from rest_framework import viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from .. import credentials
from ..models import Credential
from .permissions import ModelPermissions
from .serializers import CredentialNameSerializer, CredentialSerializer


class CredentialPermissions(ModelPermissions):
    """Writes need the model permission; reads need metadata or names-only access."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        if request.method in {"GET", "HEAD", "OPTIONS"}:
            return _sees_metadata(user) or user.has_perm("pureboot.view_credential_names")
        return super().has_permission(request, view)


def _sees_metadata(user) -> bool:
    return user.has_perm("pureboot.view_credential")


def _actor(request) -> str:
    return f"user:{request.user.get_username()}"


class CredentialViewSet(viewsets.ModelViewSet):
    """Stored credentials. Operators list names and kinds only."""

    queryset = Credential.objects.all()
    serializer_class = CredentialSerializer
    permission_classes = (IsAuthenticated, CredentialPermissions)
    filterset_fields = ("kind", "name")
    ordering_fields = ("name", "kind", "updated_at")
    ordering = ("name",)
    lookup_value_regex = r"\d{1,18}"
    http_method_names = ("get", "post", "patch", "delete", "head", "options")

    def get_serializer_class(self):
        request = getattr(self, "request", None)
        if request is not None and request.user and not _sees_metadata(request.user):
            return CredentialNameSerializer
        return CredentialSerializer

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields, secrets = serializer.split()
        try:
            credential = credentials.create_credential(_actor(request), fields, secrets)
        except IntegrityError:
            raise ValidationError(
                {"name": ["A credential with this name already exists."]}
            ) from None
        return Response(self.get_serializer(credential).data, status=201)

    def partial_update(self, request, *args, **kwargs):
        credential = self.get_object()
        serializer = self.get_serializer(credential, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        fields, secrets = serializer.split()
        try:
            credential = credentials.update_credential(
                credential.pk, _actor(request), fields, secrets
            )
        except IntegrityError:
            raise ValidationError(
                {"name": ["A credential with this name already exists."]}
            ) from None
        except Credential.DoesNotExist:
            raise Http404 from None  # deleted by someone else meanwhile
        return Response(self.get_serializer(credential).data)

    def perform_destroy(self, instance: Credential) -> None:
        credentials.delete_credential(instance.pk, _actor(self.request))
