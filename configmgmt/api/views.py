"""Inventory endpoints for configuration-management tools.

Both answer with what the calling user may see (``nodes.view_node`` and
their sites), authenticated like the rest of the API (a bearer token).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from pureboot.api.exceptions import Conflict
from pureboot.api.serializers import ErrorSerializer

from .. import inventory
from .serializers import AnsibleInventorySerializer, PuppetClassificationSerializer

REFUSALS = {
    401: OpenApiResponse(ErrorSerializer, description="no or a bad token"),
    403: OpenApiResponse(ErrorSerializer, description="may not view nodes"),
}


class BadCertname(exceptions.APIException):
    status_code = 400
    default_detail = "The certname is not a host name."
    default_code = "invalid_certname"


def _require_view(user) -> None:
    if not user.has_perm("nodes.view_node"):
        raise exceptions.PermissionDenied("Viewing nodes is needed to read the inventory.")


class AnsibleInventoryView(APIView):
    """``GET /api/v1/inventory/ansible``: the Ansible dynamic inventory of your nodes."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(
        operation_id="inventory_ansible",
        responses={200: AnsibleInventorySerializer, **REFUSALS},
    )
    def get(self, request):
        _require_view(request.user)
        return Response(inventory.ansible_inventory(request.user))


class PuppetClassifierView(APIView):
    """``GET /api/v1/inventory/puppet/<certname>``: the Puppet ENC answer for one node."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(
        operation_id="inventory_puppet",
        responses={
            200: PuppetClassificationSerializer,
            400: OpenApiResponse(ErrorSerializer, description="the certname is not a host name"),
            404: OpenApiResponse(ErrorSerializer, description="no node of yours has this name"),
            409: OpenApiResponse(ErrorSerializer, description="its metadata.puppet is malformed"),
            **REFUSALS,
        },
    )
    def get(self, request, certname: str):
        _require_view(request.user)
        try:
            name = inventory.check_certname(certname)
        except ValueError as exc:
            raise BadCertname(str(exc)) from exc
        node = inventory.puppet_node(request.user, name)
        if node is None:
            raise exceptions.NotFound(f"No node of yours is named {name}.")
        try:
            return Response(inventory.puppet_classification(node))
        except inventory.EncError as exc:
            raise Conflict(f"Node {name}: {exc}.") from exc
