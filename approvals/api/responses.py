"""How other APIs answer an action that became an approval request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response

from nodes import services as node_services

from .. import services
from ..models import ApprovalRequest
from .serializers import ApprovalRequestSerializer


def accepted(request: ApprovalRequest) -> Response:
    """202: nothing happened yet; the body is the request a second person must approve."""
    request = ApprovalRequest.objects.select_related("requested_by", "node").get(pk=request.pk)
    return Response(
        {
            "detail": f"Approval request #{request.pk} created; a second person must approve.",
            "code": "approval_required",
            "approval_request": ApprovalRequestSerializer(request).data,
        },
        status=status.HTTP_202_ACCEPTED,
    )


def ask(make: Callable[[], Any]) -> Response:
    """Run a request-making call; map the refusals to 400/403/409 and success to 202.

    ``make`` returns the new ApprovalRequest, or a dry-run dict (200).
    """
    try:
        made = make()
    except services.NotPending as exc:
        return Response(
            {"detail": str(exc), "code": "pending_request"}, status=status.HTTP_409_CONFLICT
        )
    except node_services.TransitionForbidden as exc:
        raise exceptions.PermissionDenied(str(exc)) from None
    except ValidationError as exc:
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        raise exceptions.ValidationError(detail) from None
    if isinstance(made, dict):
        return Response(made)
    return accepted(made)


def dry_run(request) -> bool:
    return request.query_params.get("dry_run", "").lower() in {"1", "true", "yes"}
