"""Operator views of the registry: site-scoped lists, lifecycle buttons, history."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from guardian.admin import GuardedModelAdmin
from guardian.shortcuts import get_group_perms, get_user_perms

from approvals import services as approvals
from audit import services as audit
from audit.admin_mixins import AuditedAdminMixin, ReadOnlyAdmin
from workflows.models import Workflow

from . import services
from .choices import NodeState
from .models import NetworkInterface, Node, NodeEvent, Site, Tag
from .permissions import accessible_sites, scope_nodes

STATE_COLOURS = {
    NodeState.DISCOVERED: "#6c757d",
    NodeState.PENDING: "#0d6efd",
    NodeState.INSTALLING: "#fd7e14",
    NodeState.INSTALLED: "#20c997",
    NodeState.ACTIVE: "#198754",
    NodeState.REPROVISION: "#6f42c1",
    NodeState.DEPROVISIONING: "#d63384",
    NodeState.MIGRATING: "#0dcaf0",
    NodeState.RETIRED: "#343a40",
    NodeState.FAILED: "#dc3545",
}


def state_badge(state: str):
    return format_html(
        '<span class="pb-state pb-state-{}" style="background:{};color:#fff;'
        'padding:2px 8px;border-radius:10px;font-size:11px;">{}</span>',
        state,
        STATE_COLOURS.get(state, "#6c757d"),
        NodeState(state).label if state in NodeState.values else state,
    )


class SiteScopedFilter(admin.RelatedFieldListFilter):
    """The site filter lists only the sites this user may see."""

    def field_choices(self, field, request, model_admin):
        return [(s.pk, str(s)) for s in accessible_sites(request.user)]


class InterfaceInline(admin.TabularInline):
    model = NetworkInterface
    extra = 0
    fields = ("mac", "name", "is_primary")


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "state_column",
        "site",
        "arch",
        "firmware",
        "primary_mac",
        "workflow",
        "last_seen_at",
    )
    list_filter = (
        "state",
        ("site", SiteScopedFilter),
        "arch",
        "firmware",
        "tags",
    )
    search_fields = ("hostname", "interfaces__mac", "serial", "system_uuid")
    list_select_related = ("site", "workflow")
    readonly_fields = (
        "state_column",
        "workflow",
        "state_changed_at",
        "install_attempts",
        "last_seen_at",
        "created_at",
        "updated_at",
        "inventory_summary",
        "inventory_at",
    )
    fieldsets = (
        (None, {"fields": ("hostname", "site", "tags", "state_column", "workflow")}),
        (
            "Identity",
            {"fields": ("serial", "system_uuid", "arch", "firmware", "vendor", "model")},
        ),
        ("Metadata", {"fields": ("metadata",), "classes": ("collapse",)}),
        ("Hardware inventory", {"fields": ("inventory_summary", "inventory_at")}),
        (
            "Lifecycle",
            {
                "fields": (
                    "state_changed_at",
                    "install_attempts",
                    "last_seen_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )
    inlines = (InterfaceInline,)
    change_form_template = "admin/nodes/node/change_form.html"

    @admin.display(description="reported by the agent")
    def inventory_summary(self, obj: Node):
        inventory = obj.inventory or {}
        if not inventory:
            return "not reported yet"
        cpus = inventory.get("cpus") or {}
        rows = [
            format_html(
                "<li>{} CPU(s) {}, {} MiB memory, firmware {} (Secure Boot {})</li>",
                cpus.get("count", "?"),
                cpus.get("model", ""),
                (inventory.get("memory_bytes") or 0) // 2**20,
                (inventory.get("firmware") or {}).get("mode", "?"),
                (inventory.get("firmware") or {}).get("secure_boot", "?"),
            )
        ]
        for disk in inventory.get("disks") or []:
            rows.append(
                format_html(
                    "<li>disk {}: {} {} ({} bytes, {}{})</li>",
                    disk.get("name"),
                    disk.get("model"),
                    disk.get("serial"),
                    disk.get("size"),
                    disk.get("transport"),
                    ", rotational" if disk.get("rotational") else "",
                )
            )
        for nic in inventory.get("nics") or []:
            rows.append(
                format_html(
                    "<li>NIC {}: {} ({} Mbit/s, {})</li>",
                    nic.get("name"),
                    nic.get("mac"),
                    nic.get("speed_mbps"),
                    nic.get("driver"),
                )
            )
        return format_html("<ul>{}</ul>", format_html_join("", "{}", ((r,) for r in rows)))

    @admin.display(description="state", ordering="state")
    def state_column(self, obj: Node):
        return state_badge(obj.state)

    @admin.display(description="primary MAC")
    def primary_mac(self, obj: Node) -> str:
        for iface in obj.interfaces.all():
            if iface.is_primary:
                return iface.mac
        return "-"

    def get_queryset(self, request):
        qs = super().get_queryset(request).prefetch_related("interfaces")
        return scope_nodes(request.user, qs)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "site":
            kwargs["queryset"] = accessible_sites(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request, obj=None) -> bool:
        # Nodes are retired, never deleted: history and audit stay intact.
        return False

    def save_model(self, request, obj, form, change):
        """Nothing here: save_related saves node, interfaces and tags in one service call."""

    def save_related(self, request, form, formsets, change):
        obj = form.instance
        data = form.cleaned_data
        fields = {
            name: data[name]
            for name in services.EDITABLE_FIELDS
            if name in data and (not change or name in form.changed_data)
        }
        interfaces = None
        for formset in formsets:
            # The admin's change message reads these; the service does the saving.
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
            if formset.model is NetworkInterface and (not change or formset.has_changed()):
                interfaces = [
                    {
                        "mac": f.cleaned_data["mac"],
                        "name": f.cleaned_data.get("name", ""),
                        "is_primary": f.cleaned_data.get("is_primary", False),
                    }
                    for f in formset.forms
                    if f.cleaned_data and not f.cleaned_data.get("DELETE")
                ]
        tags = None
        if "tags" in data and (not change or "tags" in form.changed_data):
            tags = [t.name for t in data["tags"]]
        actor = services.Actor.of(request.user)
        if change:
            services.update_node(obj.pk, actor, fields, interfaces, tags)
        else:
            node = services.create_node(actor, fields, interfaces or [], tags)
            obj.pk = node.pk

    def _file(self, request, exc: services.ApprovalRequired, what: str):
        """File what the service would not do alone; say so. Returns the request or None."""
        try:
            made = approvals.file(exc.proposal, request.user)
        except services.TransitionError as refusal:  # e.g. one already pending
            messages.error(request, f"{what}: {refusal}")
            return None
        messages.warning(
            request,
            f"{what} needs a second person. Approval request #{made.pk} waits for "
            f"approval until {made.expires_at:%Y-%m-%d %H:%M %Z}; nothing changed yet.",
        )
        return made

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except services.ApprovalRequired as exc:
            made = self._file(request, exc, "This change of what the node is recognised by")
            target = reverse("approvals:detail", args=[made.pk]) if made else request.path
            return HttpResponseRedirect(target)
        except (ValidationError, services.TransitionForbidden) as exc:
            messages.error(request, "Not saved: " + "; ".join(getattr(exc, "messages", [str(exc)])))
            return HttpResponseRedirect(request.get_full_path())

    # --- lifecycle buttons -------------------------------------------------
    def get_urls(self):
        return [
            path(
                "<int:node_id>/transition/",
                self.admin_site.admin_view(self.transition_view),
                name="nodes_node_transition",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        node = self.get_object(request, object_id)
        if node is not None:
            actor = services.Actor.of(request.user)
            extra_context.update(
                lifecycle_actions=services.available_actions(node, actor),
                transition_url=reverse("admin:nodes_node_transition", args=[node.pk]),
                workflows=Workflow.objects.all(),
                # Machines a migration may move onto: discovered, same architecture, yours.
                migration_targets=self.get_queryset(request)
                .filter(state="discovered", arch=node.arch)
                .exclude(pk=node.pk)[:500],
                node_events=node.events.select_related("user")[:50],
                state_badge=state_badge(node.state),
                # The approvals app's reverse relation; nodes does not import it.
                pending_requests=node.approval_requests.filter(status="pending")
                if hasattr(node, "approval_requests")
                else (),
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def transition_view(self, request, node_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        node = get_object_or_404(self.get_queryset(request), pk=node_id)
        back = HttpResponseRedirect(reverse("admin:nodes_node_change", args=[node.pk]))
        name = request.POST.get("action", "")
        params = {}
        if name == "assign":
            workflow = Workflow.objects.filter(pk=request.POST.get("workflow") or 0).first()
            if workflow is None:
                messages.error(request, "Choose a workflow to assign.")
                return back
            params["workflow"] = workflow
        if name == "migrate":
            params.update(target=request.POST.get("target"), disk=request.POST.get("disk", ""))
        try:
            services.perform(
                node.pk,
                name,
                services.Actor.of(request.user),
                reason=request.POST.get("reason", "")[: services.MAX_REASON_LENGTH],
                **params,
            )
        except services.ApprovalRequired as exc:
            self._file(request, exc, f"{node}: {name}")
        except services.IllegalTransition as exc:
            messages.error(request, str(exc))
        except (services.TransitionForbidden, PermissionDenied) as exc:
            messages.error(request, str(exc) or "Permission denied.")
        except services.TransitionError as exc:
            messages.error(request, str(exc))
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
        else:
            node.refresh_from_db()
            messages.success(request, f"{node}: now {node.get_state_display()}.")
        return back


@admin.register(Site)
class SiteAdmin(AuditedAdminMixin, GuardedModelAdmin):
    list_display = ("name", "slug", "description")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}

    def get_queryset(self, request):
        return accessible_sites(request.user)

    # Site grants decide who sees which machines: audit every change to them.
    def obj_perms_manage_user_view(self, request, object_pk, user_id):
        return self._audited_grant(
            request, object_pk, User, user_id, super().obj_perms_manage_user_view
        )

    def obj_perms_manage_group_view(self, request, object_pk, group_id):
        return self._audited_grant(
            request, object_pk, Group, group_id, super().obj_perms_manage_group_view
        )

    def _audited_grant(self, request, object_pk, subject_model, subject_id, view):
        site = Site.objects.filter(pk=object_pk).first() if str(object_pk).isdigit() else None
        subject = subject_model.objects.filter(pk=subject_id).first()
        if request.method != "POST" or site is None or subject is None:
            return view(request, object_pk, subject_id)
        perms_of = get_user_perms if subject_model is User else get_group_perms
        label = f"{subject_model._meta.model_name}:{subject}"
        with transaction.atomic():
            before = sorted(perms_of(subject, site))
            response = view(request, object_pk, subject_id)
            after = sorted(perms_of(subject, site))
            if before != after:
                audit.record(
                    actor=services.Actor.of(request.user).label,
                    action="site.permissions",
                    object_type="nodes.site",
                    object_id=site.pk,
                    changes={label: {"before": before, "after": after}},
                    details={"via": "admin"},
                )
        return response


@admin.register(Tag)
class TagAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "description")
    search_fields = ("name",)


@admin.register(NodeEvent)
class NodeEventAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("timestamp", "node", "kind", "actor", "from_state", "to_state", "message")
    list_filter = ("kind", "to_state")
    search_fields = ("node__hostname", "actor", "message")
    list_select_related = ("node",)

    def get_queryset(self, request):
        return super().get_queryset(request).filter(node__in=scope_nodes(request.user))
