"""Approval pages: what awaits me, my requests, history, and one request plainly."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from . import services
from .models import Status

VIEWS = {
    "awaiting": "Awaiting me",
    "mine": "My requests",
    "history": "History",
}


def _requests(user, view: str):
    qs = services.visible_requests(user).select_related("node", "requested_by")
    if view == "awaiting":
        return qs.filter(services.awaiting(user))
    if view == "mine":
        return qs.filter(requested_by=user)
    return qs.exclude(status=Status.PENDING)


@login_required
@require_http_methods(["GET", "HEAD"])
def queue(request):
    view = request.GET.get("view", "awaiting")
    if view not in VIEWS:
        view = "awaiting"
    page = Paginator(_requests(request.user, view).distinct(), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "approvals/queue.html",
        {"views": VIEWS, "view": view, "page": page, "now": timezone.now()},
    )


def _get(request, pk: int):
    obj = (
        services.visible_requests(request.user)
        .select_related("node", "requested_by")
        .prefetch_related("decisions__user")
        .filter(pk=pk)
        .first()
    )
    if obj is None:
        raise Http404("No such approval request.")
    return obj


@login_required
@require_http_methods(["GET", "HEAD"])
def detail(request, pk: int):
    obj = _get(request, pk)
    left = obj.expires_at - timezone.now()
    return render(
        request,
        "approvals/detail.html",
        {
            "req": obj,
            "pending": obj.status == Status.PENDING and left.total_seconds() > 0,
            "minutes_left": max(int(left.total_seconds() // 60), 0),
            "refusal": services.can_decide(obj, request.user),
            "is_requester": obj.requested_by_id == request.user.pk,
        },
    )


@login_required
@require_POST
def decide(request, pk: int):
    obj = _get(request, pk)
    back = HttpResponseRedirect(reverse("approvals:detail", args=[obj.pk]))
    what = request.POST.get("decision", "")
    comment = request.POST.get("comment", "")[: services.MAX_COMMENT]
    try:
        if what == "approve":
            services.approve(obj.pk, request.user, comment)
        elif what == "reject":
            services.reject(obj.pk, request.user, comment)
        elif what == "cancel":
            services.cancel(obj.pk, request.user)
        else:
            messages.error(request, "Choose approve, reject or cancel.")
            return back
    except services.ApprovalError as exc:
        messages.error(request, str(exc))
        return back
    except ValidationError as exc:
        messages.error(request, "; ".join(exc.messages))
        return back
    obj.refresh_from_db()
    messages.success(request, f"Request #{obj.pk} is now {obj.get_status_display().lower()}.")
    return back
