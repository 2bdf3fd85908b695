"""Operator-facing boot API: the preview of what a node gets now, and the boot records."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from nodes.permissions import scope_nodes
from workflows import preview as installer_preview
from workflows.context import public_base_url
from workflows.registry import redact_tasks, redact_text, secret_values

from ..preview import boot_scripts
from ..views import poll_url


class NodePreviewView(APIView):
    """``GET /api/v1/nodes/{id}/preview``: what the node would be served now. Changes nothing.

    ``boot``: the iPXE script per firmware path (a Raspberry Pi's ``config.txt``
    and ``cmdline.txt``); ``files``: the installer
    files of its pinned workflow, with what the distribution's checker says.
    """

    permission_classes = (IsAuthenticated,)

    @extend_schema(responses=OpenApiResponse(description="boot scripts and installer files"))
    def get(self, request, pk: str):
        if not request.user.has_perm("nodes.view_node"):
            raise exceptions.PermissionDenied()
        node = get_object_or_404(
            scope_nodes(request.user).select_related("workflow_version__workflow"), pk=int(pk)
        )
        base_url = public_base_url(request)
        data = {"node": node.pk, "state": node.state}
        try:
            data.update(installer_preview.preview_node(node, request=request))
        except installer_preview.NothingToPreview as exc:
            data.update({"workflow": None, "files": {}, "installer_note": str(exc)})
        data["boot"] = boot_scripts(node, base_url, poll_url(base_url))
        if node.workflow_version and not request.user.has_perm("workflows.change_workflow"):
            # Checked on the real files; shown without password hashes.
            values = secret_values(node.workflow_version.tasks)
            data["files"] = {k: redact_text(v, values) for k, v in data["files"].items()}
            data["tasks"] = redact_tasks(data.get("tasks", []))
        return Response(data)
