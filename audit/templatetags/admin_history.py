"""The admin index's "Recent actions" within the user's scope (see audit.admin_scope)."""

from __future__ import annotations

from django import template

from audit.admin_scope import visible_log_entries

register = template.Library()


@register.simple_tag(takes_context=True)
def scope_log_entries(context) -> str:
    """Narrow ``log_entries``, which Django's ``get_admin_log`` tag reads next."""
    request = context.get("request")
    entries = context.get("log_entries")
    if request is not None and entries is not None:
        context["log_entries"] = visible_log_entries(request, entries)
    return ""
