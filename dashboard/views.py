"""The dashboard page, its live panel fragments, and a node's history page.

All three sit in the admin (its look, its sign-in, its staff check: the
URLs are wrapped in ``admin.site.admin_view``). The page renders every panel
on the server; ``static/dashboard/dashboard.js`` then re-fetches each panel's
fragment every few seconds and swaps it in, so the page stays live without a
reload. A fragment is built by the same function as the page's panel, so it
is scoped the same way.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.utils.html import escape
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from nodes.admin import state_badge
from nodes.permissions import scope_nodes

from . import panels, timeline

# How often the page re-fetches its panels.
REFRESH_SECONDS = 4


def _require_node_view(request: HttpRequest) -> None:
    if not request.user.has_perm("nodes.view_node"):
        raise PermissionDenied


def _panel_html(request: HttpRequest, name: str) -> str:
    template, build = panels.PANELS[name]
    return render_to_string(template, {"panel": build(request.user)}, request=request)


@require_safe
@never_cache
def index(request: HttpRequest) -> TemplateResponse:
    """The whole dashboard, every panel rendered now."""
    _require_node_view(request)
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        # The page is wide; the admin's model sidebar would squeeze its panels.
        "is_nav_sidebar_enabled": False,
        "panels": [(name, _panel_html(request, name)) for name in panels.PANELS],
        "scope": panels.scope_note(request.user),
        "refresh_seconds": REFRESH_SECONDS,
    }
    return TemplateResponse(request, "dashboard/index.html", context)


@require_safe
@never_cache
def panel(request: HttpRequest, name: str) -> HttpResponse:
    """One panel's HTML, for the page's live refresh."""
    _require_node_view(request)
    if name not in panels.PANELS:
        raise Http404("No such dashboard panel.")
    return HttpResponse(_panel_html(request, name))


@require_safe
@never_cache
def node_history(request: HttpRequest, node_id: str) -> HttpResponse:
    """One node's timeline, newest first, a page at a time (``?before=<cursor>``)."""
    _require_node_view(request)
    node = get_object_or_404(scope_nodes(request.user).select_related("site"), pk=int(node_id))
    try:
        sources = timeline.parse_sources(request.GET.getlist("source"))
        page = timeline.page(
            node, request.user, before=request.GET.get("before") or None, sources=sources
        )
    except ValueError as exc:  # BadCursor too
        return HttpResponseBadRequest(escape(str(exc)))
    context = {
        **admin.site.each_context(request),
        "title": f"History of {node}",
        "is_nav_sidebar_enabled": False,
        "node": node,
        "state_badge": state_badge(node.state),
        "page": page,
        "paged": bool(request.GET.get("before")),
        "sources": timeline.SOURCE_NAMES,
        "chosen": sorted(sources or ()),
        "source_query": "".join(f"&source={s}" for s in sorted(sources or ())),
    }
    return TemplateResponse(request, "dashboard/node_history.html", context)
