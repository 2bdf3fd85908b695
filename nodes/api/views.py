"""Node API: declared querysets, serializers and filters; services do the work."""

from __future__ import annotations

from contextlib import contextmanager

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from approvals import services as approvals
from audit import services as audit
from pureboot.api.exceptions import Conflict
from pureboot.api.permissions import ModelPermissions

from .. import services
from ..filtersets import NodeEventFilterSet, NodeFilterSet
from ..models import Node, Site, Tag
from ..permissions import accessible_sites, scope_nodes
from .serializers import (
    NodeEventSerializer,
    NodeSerializer,
    SiteSerializer,
    StateChangeSerializer,
    TagSerializer,
    TransitionSerializer,
)


class NodePermissions(ModelPermissions):
    perms_map = {**ModelPermissions.perms_map, "DELETE": ["nodes.retire_node"]}


class CanViewNodes(ModelPermissions):
    """Lifecycle endpoints: reading the node is enough to ask; services check the action."""

    perms_map = {method: ["nodes.view_node"] for method in ModelPermissions.perms_map}


class LifecycleAnswers:
    """The answers of every view that runs a lifecycle action: 202 when a second
    person must approve (the request is filed here, by the face), 409 for an
    illegal transition or a conflicting request, 403 when forbidden."""

    def handle_exception(self, exc):
        if isinstance(exc, services.ApprovalRequired):
            # 202: accepted as a request; a second person must approve it.
            try:
                req = approvals.file(exc.proposal, self.request.user)
            except Exception as filing_error:  # noqa: BLE001 - answered like any other error
                return self.handle_exception(filing_error)
            return Response(
                {
                    "detail": f"Approval request #{req.pk} created; a second person must approve.",
                    "code": "approval_required",
                    "approval_request": {
                        "id": req.pk,
                        "action": req.action,
                        "node": req.node_id,
                        "status": req.status,
                        "expires_at": req.expires_at,
                        "url": f"/api/v1/approvals/{req.pk}",
                    },
                },
                status=status.HTTP_202_ACCEPTED,
            )
        if isinstance(exc, services.IllegalTransition):
            return Response(
                {
                    "detail": str(exc),
                    "code": "illegal_transition",
                    "current_state": exc.current,
                    "requested_state": exc.requested,
                    "allowed_states": exc.allowed,
                },
                status=status.HTTP_409_CONFLICT,
            )
        if isinstance(exc, services.TransitionForbidden):
            exc = PermissionDenied(str(exc))
        elif isinstance(exc, services.TransitionError):  # e.g. a request already pending
            return Response(
                {"detail": str(exc), "code": "conflict"}, status=status.HTTP_409_CONFLICT
            )
        return super().handle_exception(exc)

    def _actor(self) -> services.Actor:
        return services.Actor.of(self.request.user)

    def _dry_run(self) -> bool:
        """``?dry_run=1``: show what the action would do, change nothing."""
        return self.request.query_params.get("dry_run") in ("1", "true", "yes")


class NodeViewSet(LifecycleAnswers, viewsets.ModelViewSet):
    """Nodes visible to the requesting user. DELETE retires (history is kept)."""

    serializer_class = NodeSerializer
    filterset_class = NodeFilterSet
    permission_classes = (IsAuthenticated, NodePermissions)
    ordering_fields = ("id", "hostname", "state", "state_changed_at", "last_seen_at", "created_at")
    ordering = ("hostname", "id")
    lookup_value_regex = r"\d{1,18}"
    http_method_names = ("get", "post", "patch", "delete", "head", "options")

    def get_queryset(self):
        qs = Node.objects.select_related("site", "workflow", "workflow_version").prefetch_related(
            "interfaces", "tags"
        )
        return scope_nodes(self.request.user, qs)

    def filter_queryset(self, queryset):
        # List filters apply to the list; a node's own endpoints ignore them.
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)

    def get_permissions(self):
        if self.action in {"change_state", "transitions", "events"}:
            return [IsAuthenticated(), CanViewNodes()]
        return super().get_permissions()

    def _fresh(self, pk: int) -> Node:
        return self.get_queryset().get(pk=pk)

    @staticmethod
    def _split(data: dict) -> tuple[dict, list | None, list | None]:
        data = dict(data)
        return data, data.pop("interfaces", None), data.pop("tags", None)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields, interfaces, tags = self._split(serializer.validated_data)
        node = services.create_node(self._actor(), fields, interfaces or [], tags)
        return Response(self.get_serializer(self._fresh(node.pk)).data, status=201)

    def partial_update(self, request, *args, **kwargs):
        node = self.get_object()
        serializer = self.get_serializer(node, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        fields, interfaces, tags = self._split(serializer.validated_data)
        services.update_node(node.pk, self._actor(), fields, interfaces, tags)
        return Response(self.get_serializer(self._fresh(node.pk)).data)

    @extend_schema(
        parameters=[OpenApiParameter("reason", str, description="Why the node is retired")],
        responses={200: NodeSerializer},
        filters=False,
    )
    def destroy(self, request, *args, **kwargs):
        node = self.get_object()
        reason = request.query_params.get("reason", "")
        services.perform(node.pk, "retire", self._actor(), reason=reason)
        return Response(self.get_serializer(self._fresh(node.pk)).data)

    @extend_schema(
        request=StateChangeSerializer,
        responses=NodeSerializer,
        filters=False,
        parameters=[
            OpenApiParameter(
                "dry_run",
                bool,
                description="Show what would happen (states, workflow, whether a second "
                "person must approve, disks to be wiped) without doing or requesting it",
            )
        ],
    )
    @action(detail=True, methods=["patch"], url_path="state")
    def change_state(self, request, pk=None):
        """Move the node through its lifecycle: ``{"state": "<target>", "reason": "…"}``."""
        node = self.get_object()
        serializer = StateChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        actor = self._actor()
        if data.get("action"):
            name = data["action"]
            target = services.lc.ACTIONS[name].target
            if data.get("state") and data["state"] != target:
                return Response(
                    {"state": f"{name} leads to {target}, not {data['state']}."}, status=400
                )
        else:
            name = services.resolve_action(node, data["state"], actor).name
        params = {"workflow": data["workflow"]} if "workflow" in data else {}
        if name == services.lc.MIGRATE.name:
            params.update(target=data.get("target"), disk=data.get("disk", ""))
        if self._dry_run():
            return Response(services.preview_transition(node.pk, name, actor, **params))
        services.perform(node.pk, name, actor, reason=data.get("reason", ""), **params)
        return Response(self.get_serializer(self._fresh(node.pk)).data)

    @extend_schema(responses=TransitionSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], pagination_class=None)
    def transitions(self, request, pk=None):
        """What the requesting user may do to this node now."""
        node = self.get_object()
        actions = services.available_actions(node, self._actor())
        data = [
            {
                "action": a.name,
                "target": a.target,
                "label": a.label,
                "destructive": a.destructive,
                "params": list(a.params),
            }
            for a in actions
        ]
        return Response(TransitionSerializer(data, many=True).data)

    @extend_schema(
        responses=NodeEventSerializer(many=True),
        filters=False,
        parameters=[
            OpenApiParameter("kind", str),
            OpenApiParameter("since", str, description="ISO 8601 date-time"),
            OpenApiParameter("until", str, description="ISO 8601 date-time"),
        ],
    )
    @action(detail=True, methods=["get"])
    def events(self, request, pk=None):
        """The node's history, newest first."""
        node = get_object_or_404(self.get_queryset(), pk=pk)
        qs = NodeEventFilterSet(request.query_params, queryset=node.events.all())
        if not qs.is_valid():
            return Response(qs.errors, status=400)
        page = self.paginate_queryset(qs.qs)
        return self.get_paginated_response(NodeEventSerializer(page, many=True).data)


class SiteViewSet(viewsets.ModelViewSet):
    """Sites; each user lists only the sites they may use."""

    serializer_class = SiteSerializer
    permission_classes = (IsAuthenticated, ModelPermissions)
    lookup_field = "slug"
    http_method_names = ("get", "post", "patch", "delete", "head", "options")
    filterset_fields = ("slug",)
    ordering_fields = ("name", "slug")

    def get_queryset(self):
        return accessible_sites(self.request.user).order_by("name")

    def perform_create(self, serializer):
        with unique_race_as_400(), transaction.atomic():
            site = serializer.save()
            record_model_change(self.request.user, "site.create", site, None, serializer.data)

    def perform_update(self, serializer):
        with unique_race_as_400(), transaction.atomic():
            before = SiteSerializer(serializer.instance).data
            site = serializer.save()
            record_model_change(self.request.user, "site.update", site, before, serializer.data)

    def perform_destroy(self, instance: Site):
        count = instance.nodes.count()
        if count:
            raise Conflict(f"Site {instance.slug} still has {count} nodes; move them first.")
        try:
            with transaction.atomic():
                record_model_change(
                    self.request.user, "site.delete", instance, SiteSerializer(instance).data, None
                )
                instance.delete()
        except ProtectedError:
            raise Conflict(
                f"Site {instance.slug} gained nodes meanwhile; move them first."
            ) from None


class TagViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Tag.objects.all()
    serializer_class = TagSerializer
    permission_classes = (IsAuthenticated, ModelPermissions)
    filterset_fields = ("name",)
    ordering_fields = ("name",)

    def perform_create(self, serializer):
        with unique_race_as_400(), transaction.atomic():
            tag = serializer.save()
            record_model_change(self.request.user, "tag.create", tag, None, serializer.data)


@contextmanager
def unique_race_as_400():
    """Two clients creating the same name at once: the loser gets a 400, not a 500."""
    try:
        yield
    except IntegrityError:
        raise ValidationError(
            {"non_field_errors": ["An object with this name was created at the same moment."]}
        ) from None


def record_model_change(user, action: str, obj, before, after) -> None:
    """Audit a plain registry object (site, tag) changed through the API."""
    keys = set(before or {}) | set(after or {})
    audit.record(
        actor=services.Actor.of(user).label,
        action=action,
        object_type=obj._meta.label_lower,
        object_id=obj.pk,
        changes={
            k: {"before": (before or {}).get(k), "after": (after or {}).get(k)}
            for k in sorted(keys)
            if (before or {}).get(k) != (after or {}).get(k)
        },
    )
