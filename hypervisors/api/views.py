"""Hypervisor API: connections, their VMs and templates, and the calls made to them.

Calls to a hypervisor run in the worker: an action answers 202 with the
operation to follow (``GET /api/v1/hypervisor-operations/{id}``), or 202
with an approval request when a second person must approve (deleting a VM,
powering off an active node's VM, removing a hypervisor with nodes on it).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from nodes.api.views import LifecycleAnswers
from pureboot.api.permissions import ModelPermissions
from pureboot.api.serializers import ErrorSerializer

from .. import services, vms
from .. import workflow as vm_workflow
from ..drivers import Capability
from ..filtersets import HypervisorFilterSet, OperationFilterSet, VirtualMachineFilterSet
from ..models import Hypervisor, HypervisorOperation, HypervisorTemplate, VirtualMachine
from .serializers import (
    HASerializer,
    HypervisorSerializer,
    HypervisorTemplateSerializer,
    MigrateVMSerializer,
    OperationSerializer,
    PowerSerializer,
    ReasonSerializer,
    TemplateSyncSerializer,
    VirtualMachineSerializer,
    VMCreatedSerializer,
    VMCreateSerializer,
)

ERR = OpenApiResponse(ErrorSerializer)
ERRORS = {
    400: OpenApiResponse(description="invalid input (field errors)"),
    403: OpenApiResponse(ErrorSerializer, description="no permission, or not your site"),
    404: OpenApiResponse(ErrorSerializer, description="not found among what you may see"),
    409: OpenApiResponse(
        ErrorSerializer,
        description="the driver lacks the capability (code hypervisor_capability_unsupported), "
        "or a request is already pending",
    ),
}
ACCEPTED_OPERATION = OpenApiResponse(OperationSerializer, description="queued for the worker")
FOUR_EYE = OpenApiResponse(
    description="approval request filed: a second person must approve (code approval_required)"
)


class HypervisorAnswers(LifecycleAnswers):
    """LifecycleAnswers (202 for four-eye, 403, 409) plus 409 for a missing capability."""

    def handle_exception(self, exc):
        if isinstance(exc, services.CapabilityMissing):
            return Response(
                {"detail": str(exc), "code": "hypervisor_capability_unsupported"},
                status=status.HTTP_409_CONFLICT,
            )
        return super().handle_exception(exc)


def _operation(operation: HypervisorOperation) -> Response:
    return Response(OperationSerializer(operation).data, status=status.HTTP_202_ACCEPTED)


class CanViewHypervisors(ModelPermissions):
    perms_map = {m: ["hypervisors.view_hypervisor"] for m in ModelPermissions.perms_map}


class HypervisorViewSet(HypervisorAnswers, viewsets.ModelViewSet):
    """Hypervisors on your sites. Adding, changing and removing them is for admins;
    removing one with nodes on it is four-eye."""

    serializer_class = HypervisorSerializer
    permission_classes = (IsAuthenticated, ModelPermissions)
    filterset_class = HypervisorFilterSet
    ordering_fields = ("name", "type", "health", "last_sync_at")
    ordering = ("name",)
    lookup_value_regex = r"\d{1,18}"
    http_method_names = ("get", "post", "patch", "delete", "head", "options")

    def get_queryset(self):
        qs = Hypervisor.objects.select_related("site", "credential")
        return services.scope(self.request.user, qs)

    def get_permissions(self):
        if self.action in {"vms", "sync", "templates"}:
            return [IsAuthenticated(), CanViewHypervisors()]
        return super().get_permissions()

    @extend_schema(responses={201: HypervisorSerializer, **ERRORS})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        made = services.create_hypervisor(self._actor(), serializer.validated_data)
        return Response(self.get_serializer(made).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: HypervisorSerializer, **ERRORS})
    def partial_update(self, request, *args, **kwargs):
        hypervisor = self.get_object()
        serializer = self.get_serializer(hypervisor, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changed = services.update_hypervisor(
            hypervisor.pk, self._actor(), serializer.validated_data
        )
        return Response(self.get_serializer(changed).data)

    @extend_schema(
        request=ReasonSerializer,
        responses={204: None, 202: FOUR_EYE, **ERRORS},
    )
    def destroy(self, request, *args, **kwargs):
        hypervisor = self.get_object()
        reason = ReasonSerializer(data=request.data or {})
        reason.is_valid(raise_exception=True)
        services.delete_hypervisor(
            hypervisor.pk, self._actor(), reason=reason.validated_data["reason"]
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(methods=["GET"], responses={200: VirtualMachineSerializer(many=True), **ERRORS})
    @extend_schema(
        methods=["POST"],
        request=VMCreateSerializer,
        responses={202: VMCreatedSerializer, **ERRORS},
        description="Create a VM for a new node: the node is registered with the VM's MAC, "
        "the workflow (if given) assigned, and the VM created network boot first and powered "
        "on by the worker. A workflow whose first step is vm_create gives what is left out.",
    )
    @action(detail=True, methods=["get", "post"])
    def vms(self, request, pk=None):
        hypervisor = self.get_object()
        if request.method == "GET":
            qs = vms.scope(request.user, hypervisor.vms.select_related("hypervisor"))
            page = self.paginate_queryset(qs.order_by("name", "id"))
            data = VirtualMachineSerializer(page, many=True).data
            return self.get_paginated_response(data)
        serializer = VMCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        wanted = vm_workflow.request_for(hypervisor, serializer.validated_data)
        vm = vms.create(hypervisor.pk, self._actor(), wanted)
        operation = vm.operations.order_by("-id").first()
        return Response(
            {
                "vm": VirtualMachineSerializer(vm).data,
                "operation": OperationSerializer(operation).data,
            },
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(request=None, responses={202: ACCEPTED_OPERATION, **ERRORS})
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        """Read the hypervisor's inventory, templates and VMs again (in the worker)."""
        hypervisor = self.get_object()
        return _operation(services.request_sync(hypervisor.pk, self._actor()))

    @extend_schema(responses={200: HypervisorTemplateSerializer(many=True), **ERRORS})
    @action(detail=True, methods=["get"])
    def templates(self, request, pk=None):
        """The templates found at the last sync (``present`` false: gone since)."""
        hypervisor = self.get_object()
        page = self.paginate_queryset(hypervisor.templates.order_by("name", "id"))
        return self.get_paginated_response(HypervisorTemplateSerializer(page, many=True).data)


class CanViewVMs(ModelPermissions):
    perms_map = {m: ["hypervisors.view_virtualmachine"] for m in ModelPermissions.perms_map}


class VirtualMachineViewSet(
    HypervisorAnswers,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """VMs on the hypervisors you see. DELETE deletes the VM on its hypervisor
    (four-eye); power, migrate and HA are actions."""

    serializer_class = VirtualMachineSerializer
    permission_classes = (IsAuthenticated, CanViewVMs)
    filterset_class = VirtualMachineFilterSet
    ordering_fields = ("name", "status", "power", "created_at")
    ordering = ("name", "id")
    lookup_value_regex = r"\d{1,18}"

    def get_queryset(self):
        return vms.scope(self.request.user, VirtualMachine.objects.select_related("hypervisor"))

    @extend_schema(request=ReasonSerializer, responses={202: FOUR_EYE, **ERRORS})
    def destroy(self, request, *args, **kwargs):
        vm = self.get_object()
        reason = ReasonSerializer(data=request.data or {})
        reason.is_valid(raise_exception=True)
        return _operation(vms.delete(vm.pk, self._actor(), reason=reason.validated_data["reason"]))

    @extend_schema(
        request=PowerSerializer,
        responses={202: ACCEPTED_OPERATION, **ERRORS},
        description="on, off (four-eye when the VM's node is active) or reboot (a reset).",
    )
    @action(detail=True, methods=["post"])
    def power(self, request, pk=None):
        vm = self.get_object()
        serializer = PowerSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        return _operation(vms.power(vm.pk, self._actor(), data["action"], reason=data["reason"]))

    @extend_schema(request=MigrateVMSerializer, responses={202: ACCEPTED_OPERATION, **ERRORS})
    @action(detail=True, methods=["post"])
    def migrate(self, request, pk=None):
        """Live-migrate the running VM to another host (drivers with live_migrate)."""
        vm = self.get_object()
        serializer = MigrateVMSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return _operation(vms.migrate(vm.pk, self._actor(), serializer.validated_data["host"]))

    @extend_schema(request=HASerializer, responses={202: ACCEPTED_OPERATION, **ERRORS})
    @action(detail=True, methods=["post"])
    def ha(self, request, pk=None):
        """Turn the platform's high availability on or off (drivers with ha)."""
        vm = self.get_object()
        serializer = HASerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return _operation(vms.set_ha(vm.pk, self._actor(), serializer.validated_data["enabled"]))


class CanViewOperations(ModelPermissions):
    perms_map = {m: ["hypervisors.view_hypervisoroperation"] for m in ModelPermissions.perms_map}


class OperationViewSet(viewsets.ReadOnlyModelViewSet):
    """Calls made to hypervisors you see: their status, attempts and stored reason."""

    serializer_class = OperationSerializer
    permission_classes = (IsAuthenticated, CanViewOperations)
    filterset_class = OperationFilterSet
    ordering = ("-created_at", "-id")
    lookup_value_regex = r"\d{1,18}"

    def get_queryset(self):
        return HypervisorOperation.objects.select_related("hypervisor").filter(
            hypervisor__in=services.scope(self.request.user)
        )


class CanViewTemplates(ModelPermissions):
    perms_map = {m: ["hypervisors.view_hypervisortemplate"] for m in ModelPermissions.perms_map}


def _syncs_templates(hypervisor: Hypervisor) -> bool:
    try:
        return Capability.TEMPLATE_SYNC.value in services.capabilities(hypervisor)
    except ValidationError:  # its driver's library is not installed here
        return False


class TemplateSyncView(HypervisorAnswers, APIView):
    """``POST /api/v1/templates/sync``: read the templates of every hypervisor you
    see (or one) again, in the worker. Answers 202 with the sync operations."""

    permission_classes = (IsAuthenticated, CanViewTemplates)
    queryset = HypervisorTemplate.objects.none()  # for the permission class

    @extend_schema(
        request=TemplateSyncSerializer,
        parameters=[OpenApiParameter("hypervisor", int, required=False)],
        responses={202: OperationSerializer(many=True), **ERRORS},
    )
    def post(self, request):
        serializer = TemplateSyncSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        visible = services.scope(request.user)
        wanted = serializer.validated_data.get("hypervisor")
        if wanted is not None:
            hypervisors = [get_object_or_404(visible, pk=wanted)]
            services.require(hypervisors[0], Capability.TEMPLATE_SYNC)
        else:
            hypervisors = [h for h in visible if _syncs_templates(h)]
        operations = [services.request_sync(h.pk, self._actor()) for h in hypervisors]
        return Response(
            OperationSerializer(operations, many=True).data, status=status.HTTP_202_ACCEPTED
        )
