"""``GET /api/v1/nodes/{id}/timeline``: a node's history, read-only, scoped like the node."""

from __future__ import annotations

from urllib.parse import urlencode

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from nodes.permissions import scope_nodes

from .. import timeline
from .serializers import NodeTimelinePageSerializer, NodeTimelineQuerySerializer


class NodeTimelineView(APIView):
    """Boots, transitions, reports, install runs and log lines, approvals and (for
    audit readers) audit events of one node, newest first.

    A node the user may not see is a 404, as for ``/api/v1/nodes/{id}``.
    Pages follow ``next`` (a keyset cursor): stable while new entries arrive.
    """

    permission_classes = (IsAuthenticated,)
    http_method_names = ["get", "head"]

    @extend_schema(
        operation_id="nodes_timeline",
        parameters=[
            OpenApiParameter("before", str, description="next_cursor of the previous page"),
            OpenApiParameter("limit", int, description="Entries per page (1-200, default 50)"),
            OpenApiParameter(
                "source", str, description="Comma-separated: " + ", ".join(timeline.SOURCE_NAMES)
            ),
        ],
        responses={
            200: NodeTimelinePageSerializer,
            400: OpenApiResponse(description="A malformed cursor, limit or source"),
            403: OpenApiResponse(description="No permission to view nodes"),
            404: OpenApiResponse(description="No such node, or not one the user may see"),
        },
    )
    def get(self, request, pk: str):
        if not request.user.has_perm("nodes.view_node"):
            raise exceptions.PermissionDenied()
        node = scope_nodes(request.user).filter(pk=int(pk)).first()
        if node is None:
            raise exceptions.NotFound("No such node.")
        query = NodeTimelineQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        try:
            sources = timeline.parse_sources([data.get("source", "")])
            page = timeline.page(
                node,
                request.user,
                before=data.get("before"),
                limit=data["limit"],
                sources=sources,
            )
        except ValueError as exc:
            raise exceptions.ValidationError({"detail": str(exc), "code": "invalid"}) from None
        following = None
        if page.next_cursor:
            params = {"before": page.next_cursor, "limit": data["limit"]}
            if data.get("source"):
                params["source"] = data["source"]
            following = request.build_absolute_uri(request.path) + "?" + urlencode(params)
        body = {
            "results": [
                {
                    "at": e.at,
                    "source": e.source,
                    "kind": e.kind,
                    "actor": e.actor,
                    "summary": e.summary,
                    "state": e.state,
                    "url": e.url,
                    "details": e.details,
                }
                for e in page.entries
            ],
            "next": following,
            "next_cursor": page.next_cursor,
        }
        return Response(NodeTimelinePageSerializer(body).data)
