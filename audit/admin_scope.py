"""What the admin shows beyond each model's own pages stays within the user's scope.

Each registered ModelAdmin's ``get_queryset`` is the scope of its model (site
scope for nodes and everything hanging off them, the approvals' own rule for
requests). These helpers apply it where Django's admin would not by itself:
the "Recent actions" of the index page, and changelist filters on fields an
admin never shows.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.models import DELETION
from django.contrib.contenttypes.models import ContentType
from django.db.models import CharField, Q, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.db.models.functions import Cast


def visible_log_entries(request, entries: QuerySet, site: admin.AdminSite | None = None):
    """``entries`` (admin LogEntry rows) narrowed to objects the user may still open.

    An entry names its object (``object_repr``); a user who edited another
    site's node while granted that site must not read its name once the grant
    is gone. Each model's admin queryset decides. A deletion cannot be checked
    (its object is gone): it is kept only for those who may delete such
    objects now.
    """
    site = site or admin.site
    logged = set(entries.order_by().values_list("content_type_id", flat=True).distinct())
    allowed = Q(pk__in=[])
    for model, model_admin in site._registry.items():
        content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
        if content_type.pk not in logged:
            continue  # nothing to show; spares a subquery over, say, every node
        if not model_admin.has_view_or_change_permission(request):
            continue
        ids = (
            model_admin.get_queryset(request)
            .prefetch_related(None)
            .annotate(_log_object_id=Cast("pk", CharField()))
            .values("_log_object_id")
        )
        allowed |= Q(content_type=content_type, object_id__in=ids)
        if model_admin.has_delete_permission(request):
            allowed |= Q(content_type=content_type, action_flag=DELETION)
    return entries.filter(allowed)


class HiddenFieldsAdminMixin:
    """Changelist filters cannot probe the fields an admin never shows.

    Django's changelist accepts ``?<field>__startswith=…`` on any local field,
    shown or not, so a hidden value (a token nonce, a sealed secret, a
    credential's metadata for names-only readers) could be read by narrowing
    the list one character at a time. Lookups on the fields of
    ``get_exclude()`` and on non-editable fields named in ``hidden_fields``
    are refused.
    """

    hidden_fields: tuple[str, ...] = ()

    def lookup_allowed(self, lookup, value, request=None):
        hidden = {*self.hidden_fields, *(self.get_exclude(request) or ())}
        if lookup.split(LOOKUP_SEP, 1)[0] in hidden:
            return False
        return super().lookup_allowed(lookup, value, request)
