"""The agent's protocol (node token) and the people-facing wipe endpoints."""

from __future__ import annotations

from django.db.models import Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, viewsets
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from nodes import agent_tokens
from nodes import services as node_services
from nodes.api.views import LifecycleAnswers
from nodes.models import Migration, Node
from nodes.permissions import scope_nodes
from pureboot.api.permissions import ModelPermissions
from pureboot.http import serve_file
from workflows import imagefiles
from workflows.images import raw_file
from workflows.models import ImageTemplateVersion

from .. import certificates, migration, services, wipe
from ..filtersets import AgentJobFilterSet, MigrationFilterSet, WipeCertificateFilterSet
from ..models import AgentJob, WipeCertificate
from ..steps import JobError
from .serializers import (
    AgentJobAnswerSerializer,
    AgentJobSerializer,
    DeprovisionSerializer,
    HeartbeatSerializer,
    InventorySerializer,
    LogSerializer,
    MigrateSerializer,
    MigrationSerializer,
    StepReportSerializer,
    WipeCertificateSerializer,
)


class AgentTokenAuthentication(BaseAuthentication):
    """``Authorization: Node <token>``: the agent token from the agent's kernel command line."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"node":
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Authorization: Node <token>")
        token = parts[1].decode("latin-1")
        try:
            node, _run = services.resolve(token)
        except agent_tokens.AgentTokenInvalid as exc:
            raise exceptions.AuthenticationFailed(f"Agent token refused: {exc}.") from None
        return (None, (node, token))

    def authenticate_header(self, request):
        return "Node"


class HasAgentToken(BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.auth, tuple)


class AgentView(APIView):
    authentication_classes = (AgentTokenAuthentication,)
    permission_classes = (HasAgentToken,)
    throttle_classes = (ScopedRateThrottle,)
    throttle_scope = "agent"

    def handle_exception(self, exc):
        if isinstance(exc, JobError):
            return Response({"detail": str(exc), "code": exc.code}, status=exc.status)
        if isinstance(exc, agent_tokens.AgentTokenInvalid):
            exc = exceptions.AuthenticationFailed(f"Agent token refused: {exc}.")
        return super().handle_exception(exc)

    @property
    def node(self) -> Node:
        return self.request.auth[0]


class JobView(AgentView):
    """``GET /api/v1/agent/job``: what the agent should do now."""

    @extend_schema(responses=AgentJobAnswerSerializer)
    def get(self, request):
        node, job = services.job_for(request.auth[1], request.META.get("REMOTE_ADDR", ""))
        if job is None:
            reason = f"node {node.pk} is {node.state}; nothing for the agent to do"
        elif job.status != "running":
            reason = f"job {job.pk} {job.status}: {job.error or 'done'}"
        else:
            reason = job.where
        return Response(services.instructions(job, reason))


class StepView(AgentView):
    """``POST /api/v1/agent/jobs/{id}/steps/{index}``: a step started, succeeded or failed."""

    @extend_schema(request=StepReportSerializer, responses=AgentJobAnswerSerializer)
    def post(self, request, pk: str, index: str):
        serializer = StepReportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        job = get_object_or_404(AgentJob, pk=int(pk), node=self.node)
        result = data.get("result")
        if (
            data["status"] == "succeeded"
            and job.steps[min(int(index), len(job.steps) - 1)].get("action") == "inventory"
        ):
            inventory = InventorySerializer(data=result)
            inventory.is_valid(raise_exception=True)
            result = inventory.validated_data
        job = services.report_step(
            self.node,
            job.pk,
            int(index),
            data["status"],
            data["detail"],
            result,
            source=request.META.get("REMOTE_ADDR", ""),
        )
        return Response(services.instructions(job, job.error or job.where))


class ImageView(AgentView):
    """``GET /api/v1/agent/jobs/{id}/image``: the raw image (or the archive) a deploy step streams.

    Only for the job's own agent, while its deploy step is the one to run;
    sent by nginx (X-Accel-Redirect) when PUREBOOT_ACCEL_REDIRECT is set.
    """

    throttle_classes = ()  # one request per deployment, and range retries

    @extend_schema(responses={200: OpenApiResponse(description="the raw image")})
    def get(self, request, pk: str):
        job = get_object_or_404(AgentJob, pk=int(pk), node=self.node, status="running")
        step = services.next_step(job)
        if step is None or step["action"] not in ("deploy", "deploy_files"):
            raise Http404("This job has no image to stream now.")
        version = get_object_or_404(ImageTemplateVersion, pk=job.params.get("version"))
        relative, size, sha = raw_file(version)
        path = imagefiles.image_root() / relative
        if not path.is_file():
            raise Http404("The image file is missing on the controller; see the server log.")
        return serve_file(request, path, relative=relative, etag=sha, filename=f"{version.pk}.img")


class HeartbeatView(AgentView):
    """``POST /api/v1/agent/jobs/{id}/heartbeat``: the agent is alive and where it is."""

    @extend_schema(request=HeartbeatSerializer, responses=AgentJobSerializer)
    def post(self, request, pk: str):
        serializer = HeartbeatSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = services.heartbeat(
            self.node, int(pk), serializer.validated_data, request.META.get("REMOTE_ADDR", "")
        )
        return Response(AgentJobSerializer(job).data)


class LogView(AgentView):
    """``POST /api/v1/agent/jobs/{id}/log``: lines of the agent's log."""

    @extend_schema(request=LogSerializer, responses={200: OpenApiResponse(description="kept")})
    def post(self, request, pk: str):
        serializer = LogSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        kept = services.append_log(
            self.node,
            int(pk),
            serializer.validated_data["lines"],
            request.META.get("REMOTE_ADDR", ""),
        )
        return Response({"kept": kept})


# What a four-eye lifecycle endpoint answers (LifecycleAnswers).
FOUR_EYE_ANSWERS = {
    202: OpenApiResponse(description="approval request filed"),
    200: OpenApiResponse(description="dry run, or done without approval"),
    403: OpenApiResponse(description="forbidden"),
    404: OpenApiResponse(description="no such node visible to you"),
    409: OpenApiResponse(description="illegal transition or pending request"),
}


class DeprovisionView(LifecycleAnswers, APIView):
    """``POST /api/v1/deprovision``: securely erase a node's disks (four-eye).

    ``?dry_run=1`` shows, without asking anything, whether a second person
    must approve and which method each disk would get (from the node's last
    inventory; unknown until the agent has reported one).
    """

    permission_classes = (IsAuthenticated,)

    @extend_schema(
        request=DeprovisionSerializer,
        parameters=[OpenApiParameter("dry_run", bool)],
        responses=FOUR_EYE_ANSWERS,
    )
    def post(self, request):
        serializer = DeprovisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        node = get_object_or_404(scope_nodes(request.user), pk=data["node"])
        params = {"after": data["after"], "category": data["category"]}
        actor = self._actor()
        if self._dry_run():
            preview = node_services.preview_transition(node.pk, "deprovision", actor, **params)
            preview["disks_to_wipe"] = wipe.plan_inventory(node.inventory, data["category"])
            preview.update(params)
            return Response(preview)
        node = node_services.perform(node.pk, "deprovision", actor, reason=data["reason"], **params)
        return Response({"node": node.pk, "state": node.state, **params})


class MigrateView(LifecycleAnswers, APIView):
    """``POST /api/v1/migrate``: move an active node's system and identity to another machine.

    Four-eye: answered 202 with the approval request. ``?dry_run=1`` shows,
    without asking anything, whether a second person must approve and which
    disk would be copied onto which (from the machines' last inventories;
    unknown until the agent has reported one).
    """

    permission_classes = (IsAuthenticated,)

    @extend_schema(
        request=MigrateSerializer,
        parameters=[OpenApiParameter("dry_run", bool)],
        responses={**FOUR_EYE_ANSWERS, 400: OpenApiResponse(description="bad target or disk rule")},
    )
    def post(self, request):
        serializer = MigrateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        node = get_object_or_404(scope_nodes(request.user), pk=data["source"])
        params = {"target": data["target"], "disk": data["disk"]}
        actor = self._actor()
        if self._dry_run():
            preview = node_services.preview_migration(node.pk, actor, **params)
            return Response({**preview, **migration.plan(node.pk, **params)})
        node = node_services.perform(node.pk, "migrate", actor, reason=data["reason"], **params)
        return Response({"node": node.pk, "state": node.state, **params})


class MigrationViewSet(viewsets.ReadOnlyModelViewSet):
    """Hardware migrations whose source or target you can see."""

    serializer_class = MigrationSerializer
    permission_classes = (IsAuthenticated, ModelPermissions)
    filterset_class = MigrationFilterSet

    def get_queryset(self):
        nodes = scope_nodes(self.request.user, Node.objects.all())
        return (
            Migration.objects.filter(Q(source__in=nodes) | Q(target__in=nodes))
            .distinct()
            .order_by("-created_at", "-id")
        )


class CanViewCertificates(ModelPermissions):
    perms_map = {m: ["agent.view_wipecertificate"] for m in ModelPermissions.perms_map}


class WipeCertificateViewSet(viewsets.ReadOnlyModelViewSet):
    """Wipe certificates of the nodes visible to you (the signed document and signature)."""

    serializer_class = WipeCertificateSerializer
    permission_classes = (IsAuthenticated, CanViewCertificates)
    lookup_field = "uuid"
    lookup_value_regex = (
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    )
    filterset_class = WipeCertificateFilterSet

    def get_queryset(self):
        nodes = scope_nodes(self.request.user, Node.objects.all())
        return WipeCertificate.objects.filter(node__in=nodes).order_by("-created_at", "-id")

    @extend_schema(responses={200: OpenApiResponse(description="the certificate file")})
    @action(detail=True, methods=["get"])
    def export(self, request, uuid=None):
        """The certificate as one JSON file for ``manage.py verify_certificate``."""
        cert = self.get_object()
        response = Response(certificates.export(cert))
        response["Content-Disposition"] = f'attachment; filename="wipe-{cert.uuid}.json"'
        return response

    @extend_schema(responses={200: OpenApiResponse(description="HTML page")})
    @action(detail=True, methods=["get"])
    def html(self, request, uuid=None):
        """The certificate as a page for people (print it to PDF from the browser)."""
        cert = self.get_object()
        return HttpResponse(certificates.render_html(cert), content_type="text/html; charset=utf-8")


class CanViewJobs(ModelPermissions):
    perms_map = {m: ["agent.view_agentjob"] for m in ModelPermissions.perms_map}


class AgentJobViewSet(viewsets.ReadOnlyModelViewSet):
    """The agent's jobs on the nodes visible to you: steps, where it is or stopped, errors."""

    serializer_class = AgentJobSerializer
    permission_classes = (IsAuthenticated, CanViewJobs)
    filterset_class = AgentJobFilterSet

    def get_queryset(self):
        nodes = scope_nodes(self.request.user, Node.objects.all())
        return AgentJob.objects.filter(node__in=nodes).order_by("-created_at", "-id")
