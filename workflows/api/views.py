"""Workflow API: workflows and versions, installer reports, previews, installer files."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Prefetch
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status, viewsets
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.decorators import action
from rest_framework.parsers import BaseParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from nodes import services as node_services
from nodes.models import Node
from nodes.permissions import scope_nodes
from pureboot.api.parsers import StrictJSONParser
from pureboot.api.permissions import ModelPermissions

from .. import preview, services
from ..definitions import MAX_DOCUMENT_BYTES, DefinitionError
from ..models import Workflow, WorkflowVersion
from ..rendering import RenderError
from .serializers import (
    ReportSerializer,
    RunLogSerializer,
    RunSerializer,
    TaskTypeSerializer,
    VersionSerializer,
    VersionSummarySerializer,
    WorkflowSerializer,
)


class YAMLTextParser(BaseParser):
    """A raw YAML body (``Content-Type: application/yaml``) is the workflow's content."""

    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        data = stream.read(MAX_DOCUMENT_BYTES + 1) if stream else b""
        if len(data) > MAX_DOCUMENT_BYTES:
            raise exceptions.ParseError(f"document is larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            return {"content": data.decode("utf-8")}
        except UnicodeDecodeError:
            raise exceptions.ParseError("document is not UTF-8 text") from None


class TextYAMLParser(YAMLTextParser):
    media_type = "text/yaml"


def _definition_error(exc: DefinitionError) -> Response:
    return Response({"content": [str(exc)], "error": exc.as_dict()}, status=400)


class WorkflowViewSet(viewsets.ModelViewSet):
    """Workflows. POST/PATCH take ``{"content": "<yaml>"}`` or a raw YAML body."""

    serializer_class = WorkflowSerializer
    permission_classes = (IsAuthenticated, ModelPermissions)
    parser_classes = (StrictJSONParser, YAMLTextParser, TextYAMLParser)
    lookup_value_regex = r"\d{1,18}"
    http_method_names = ("get", "post", "patch", "delete", "head", "options")
    filterset_fields = ("name",)
    ordering_fields = ("name", "created_at", "updated_at")
    ordering = ("name",)

    def get_queryset(self):
        newest = WorkflowVersion.objects.filter(
            ~Exists(
                WorkflowVersion.objects.filter(
                    workflow=OuterRef("workflow"), number__gt=OuterRef("number")
                )
            )
        )
        return Workflow.objects.filter(archived_at__isnull=True).prefetch_related(
            Prefetch("versions", queryset=newest, to_attr="newest_versions")
        )

    def _actor(self):
        return node_services.Actor.of(self.request.user)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            result = services.save_workflow(serializer.validated_data["content"], self._actor())
        except DefinitionError as exc:
            return _definition_error(exc)
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        data = self.get_serializer(result.workflow).data
        data["warnings"] = list(result.warnings)
        return Response(data, status=code)

    def partial_update(self, request, *args, **kwargs):
        workflow = self.get_object()
        serializer = self.get_serializer(workflow, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        if "content" not in serializer.validated_data:
            raise exceptions.ValidationError({"content": "Send the workflow's new YAML."})
        try:
            result = services.save_workflow(
                serializer.validated_data["content"], self._actor(), expected_name=workflow.name
            )
        except DefinitionError as exc:
            return _definition_error(exc)
        except ValueError as exc:
            raise exceptions.ValidationError({"content": [str(exc)]}) from None
        data = self.get_serializer(Workflow.objects.get(pk=workflow.pk)).data
        data["warnings"] = list(result.warnings)
        return Response(data)

    @extend_schema(responses={204: None, 409: OpenApiResponse(description="pinned by nodes")})
    def destroy(self, request, *args, **kwargs):
        workflow = self.get_object()
        try:
            services.delete_workflow(workflow.pk, self._actor())
        except services.WorkflowInUse as exc:
            return Response(
                {"detail": str(exc), "code": "workflow_in_use", "nodes": exc.node_ids},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=VersionSummarySerializer(many=True), filters=False)
    @action(detail=True, methods=["get"])
    def versions(self, request, pk=None):
        """Every version of this workflow, newest first."""
        workflow = self.get_object()
        page = self.paginate_queryset(workflow.versions.order_by("-number"))
        return self.get_paginated_response(VersionSummarySerializer(page, many=True).data)

    @extend_schema(responses=VersionSerializer, filters=False)
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<number>\d{1,9})")
    def version(self, request, pk=None, number=None):
        """One version: its YAML as saved and its validated definition."""
        workflow = self.get_object()
        version = get_object_or_404(workflow.versions, number=int(number))
        return Response(VersionSerializer(version, context={"request": request}).data)

    @extend_schema(responses=TaskTypeSerializer(many=True), filters=False)
    @action(detail=False, methods=["get"], url_path="task-types", pagination_class=None)
    def task_types(self, request):
        """The task types a workflow may use, with their parameters."""
        return Response(TaskTypeSerializer.registry_data())


class NodeTokenAuthentication(BaseAuthentication):
    """``Authorization: Node <token>``: the per-node token from the installer config."""

    keyword = b"node"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Authorization: Node <token>")
        token = parts[1].decode("latin-1")
        try:
            # A finished install's token still authenticates; the view lets it
            # report only the first boot (see ReportView.post).
            run = services.resolve_token(token, for_first_boot=True)
        except services.TokenInvalid as exc:
            raise exceptions.AuthenticationFailed(f"Node token refused: {exc}.") from None
        return (None, run)

    def authenticate_header(self, request):
        return "Node"


class HasNodeToken(BasePermission):
    def has_permission(self, request, view):
        return request.auth is not None and hasattr(request.auth, "node_id")


class ReportView(APIView):
    """``POST /api/v1/report``: an installer reports progress, completion or failure."""

    authentication_classes = (NodeTokenAuthentication,)
    permission_classes = (HasNodeToken,)
    throttle_classes = (ScopedRateThrottle,)
    throttle_scope = "report"

    @extend_schema(request=ReportSerializer, responses=RunSerializer)
    def post(self, request):
        serializer = ReportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        run = request.auth
        if run.status != "running" and data["status"] != "active":
            raise exceptions.AuthenticationFailed(
                "Node token refused: the install ended; only the first boot may be reported."
            )
        if data.get("node_id") and data["node_id"] not in {str(run.node_id), run.node.hostname}:
            raise exceptions.PermissionDenied("This token belongs to another node.")
        try:
            run = services.handle_report(run.pk, data)
        except node_services.IllegalTransition as exc:
            return Response(
                {"detail": str(exc), "code": "illegal_transition"}, status=status.HTTP_409_CONFLICT
            )
        return Response(RunSerializer(run).data)


class InstallFileView(APIView):
    """``GET /api/v1/install/{token}/{name}``: an installer file, for the node holding the token.

    The token in the path is the credential (installers fetch these by URL:
    NoCloud ``s=``, ``inst.ks=``, ``preseed/url=``). Anything wrong is a 404.
    """

    authentication_classes = ()
    permission_classes = ()
    throttle_classes = (ScopedRateThrottle,)
    throttle_scope = "report"

    @extend_schema(exclude=True)
    def get(self, request, token: str, name: str):
        try:
            run = services.resolve_token(token)
        except services.TokenInvalid:
            raise Http404("Unknown or expired install token.") from None
        names = preview.file_names(run)
        if name not in names:
            # Before rendering: a name the install does not have reveals nothing.
            if not names:
                raise Http404("This workflow has no installer files.")
            raise Http404(f"No installer file {name!r}; this install serves {sorted(names)}.")
        try:
            files = preview.render_for_run(run, token, request=request)
        except preview.NothingToPreview:
            raise Http404("This workflow has no installer files.") from None
        except RenderError as exc:
            return HttpResponse(
                f"Cannot render this node's installer config: {exc}\n",
                status=409,
                content_type="text/plain; charset=utf-8",
            )
        if name not in files:
            raise Http404(f"No installer file {name!r}; this install serves {sorted(files)}.")
        Node.objects.filter(pk=run.node_id).update(last_seen_at=timezone.now())
        return HttpResponse(files[name], content_type="text/plain; charset=utf-8")


class NodeRunsView(APIView):
    """``GET /api/v1/nodes/{id}/runs``: the node's installs, newest first."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(responses=RunSerializer(many=True))
    def get(self, request, pk: str):
        if not request.user.has_perm("workflows.view_workflowrun"):
            raise exceptions.PermissionDenied()
        node = get_object_or_404(scope_nodes(request.user), pk=int(pk))
        runs = node.runs.select_related("version__workflow")
        paginator = api_settings.DEFAULT_PAGINATION_CLASS()
        page = paginator.paginate_queryset(runs, request, view=self)
        return paginator.get_paginated_response(RunSerializer(page, many=True).data)


class RunLogView(APIView):
    """``GET /api/v1/nodes/{id}/runs/{run}/logs``: what the installer reported, oldest first."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(responses=RunLogSerializer(many=True))
    def get(self, request, pk: str, run: str):
        if not request.user.has_perm("workflows.view_runlogline"):
            raise exceptions.PermissionDenied()
        node = get_object_or_404(scope_nodes(request.user), pk=int(pk))
        run_obj = get_object_or_404(node.runs, pk=int(run))
        paginator = api_settings.DEFAULT_PAGINATION_CLASS()
        page = paginator.paginate_queryset(run_obj.logs.all(), request, view=self)
        return paginator.get_paginated_response(RunLogSerializer(page, many=True).data)
