"""One error shape for the whole API.

DRF already turns validation, permission and not-found errors into 4xx
answers; this handler adds the cases that would otherwise surface as a 500:
django-fsm's refusals and Django's own ValidationError raised by model
``clean()`` methods.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django_fsm import ConcurrentTransition, TransitionNotAllowed
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            exc = exceptions.ValidationError(exc.message_dict)
        else:
            exc = exceptions.ValidationError({"non_field_errors": exc.messages})
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, ConcurrentTransition):
        exc = Conflict("Another change to this node was committed first; reload and retry.")
    elif isinstance(exc, TransitionNotAllowed):
        exc = Conflict(str(exc))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(response.data, dict) and "detail" in response.data:
        response.data.setdefault("code", getattr(exc, "default_code", "error"))
        detail = getattr(exc, "detail", None)
        if isinstance(detail, exceptions.ErrorDetail):
            response.data["code"] = detail.code
    return response


def conflict_response(payload: dict) -> Response:
    return Response(payload, status=status.HTTP_409_CONFLICT)
