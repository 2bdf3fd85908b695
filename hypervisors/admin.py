"""Hypervisors in the admin: scoped lists, a dashboard, and VM actions that go
through the same services (and four-eye requests) as the API."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from approvals import services as approvals
from audit.admin_mixins import ReadOnlyAdmin
from audit.admin_scope import HiddenFieldsAdminMixin
from nodes.transitions import Actor, TransitionError
from pureboot import gate

from . import dashboard, services, vms
from .drivers import base
from .models import Hypervisor, HypervisorOperation, HypervisorTemplate, VirtualMachine


def _file(request, exc: gate.ApprovalRequired, what: str) -> None:
    try:
        made = approvals.file(exc.proposal, request.user)
    except TransitionError as refusal:
        messages.error(request, f"{what}: {refusal}")
        return
    messages.warning(
        request,
        f"{what} needs a second person. Approval request #{made.pk} waits for approval "
        f"until {made.expires_at:%Y-%m-%d %H:%M %Z}; nothing changed yet.",
    )


def _refusal(request, exc: Exception) -> None:
    messages.error(request, "; ".join(getattr(exc, "messages", None) or [str(exc)]))


@admin.register(Hypervisor)
class HypervisorAdmin(HiddenFieldsAdminMixin, admin.ModelAdmin):
    list_display = ("name", "type", "site", "health_badge", "version", "last_sync_at", "vms")
    list_filter = ("type", "health")
    search_fields = ("name", "endpoint")
    fields = (
        *services.EDITABLE,
        "health",
        "health_message",
        "version",
        "last_sync_at",
        "last_error",
    )
    readonly_fields = ("health", "health_message", "version", "last_sync_at", "last_error")

    def get_queryset(self, request):
        return services.scope(request.user, super().get_queryset(request))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "credential":
            kwargs["queryset"] = db_field.related_model.objects.filter(kind="hypervisor")
        if db_field.name == "site":
            kwargs["queryset"] = services.accessible_sites(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="health")
    def health_badge(self, obj: Hypervisor):
        return format_html(
            '<span class="pb-health-{}">{}</span>', obj.health, obj.get_health_display()
        )

    @admin.display(description="VMs")
    def vms(self, obj: Hypervisor) -> int:
        return services.live_vms(obj).count()

    def save_model(self, request, obj, form, change):
        actor = Actor.of(request.user)
        fields = {f: form.cleaned_data[f] for f in services.EDITABLE if f in form.cleaned_data}
        if change:
            saved = services.update_hypervisor(obj.pk, actor, fields)
        else:
            saved = services.create_hypervisor(actor, fields)
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        services.delete_hypervisor(obj.pk, Actor.of(request.user))

    def has_delete_permission(self, request, obj=None) -> bool:
        # Bulk deletion would bypass the four-eye check; one at a time only.
        return obj is not None and super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except gate.ApprovalRequired as exc:
            _file(request, exc, "This change of how PureBoot connects to the hypervisor")
            return HttpResponseRedirect(reverse("admin:hypervisors_hypervisor_changelist"))
        except (ValidationError, services.TransitionForbidden) as exc:
            _refusal(request, exc)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except gate.ApprovalRequired as exc:
            _file(request, exc, "Removing this hypervisor")
        except (ValidationError, TransitionError) as exc:
            _refusal(request, exc)
        return HttpResponseRedirect(reverse("admin:hypervisors_hypervisor_changelist"))

    def get_urls(self):
        return [
            path(
                "dashboard/",
                self.admin_site.admin_view(self.dashboard_view),
                name="hypervisors_dashboard",
            ),
            path(
                "<int:pk>/sync/",
                self.admin_site.admin_view(self.sync_view),
                name="hypervisors_hypervisor_sync",
            ),
            *super().get_urls(),
        ]

    def dashboard_view(self, request):
        if not request.user.has_perm("hypervisors.view_hypervisor"):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Hypervisors",
            "cards": dashboard.cards(request.user, super().get_queryset(request)),
        }
        return TemplateResponse(request, "admin/hypervisors/dashboard.html", context)

    def sync_view(self, request, pk: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        hypervisor = get_object_or_404(self.get_queryset(request), pk=pk)
        try:
            operation = services.request_sync(hypervisor.pk, Actor.of(request.user))
        except (ValidationError, TransitionError) as exc:
            _refusal(request, exc)
        else:
            operation.refresh_from_db()
            messages.info(request, f"Sync of {hypervisor}: {operation.get_status_display()}.")
        return HttpResponseRedirect(reverse("admin:hypervisors_dashboard"))


POWER_ACTIONS = {a.value for a in base.PowerAction}


class ScopedHypervisorFilter(admin.SimpleListFilter):
    """Filter by hypervisor, offering only the hypervisors this user sees."""

    title = "hypervisor"
    parameter_name = "hypervisor"

    def lookups(self, request, model_admin):
        return [(str(h.pk), h.name) for h in services.scope(request.user)]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(hypervisor_id=int(value))
        return queryset


@admin.register(VirtualMachine)
class VirtualMachineAdmin(HiddenFieldsAdminMixin, ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("name", "hypervisor", "node", "status", "power", "host", "managed")
    list_filter = ("status", "power", "managed", ScopedHypervisorFilter)
    search_fields = ("name", "platform_id", "node__hostname")
    readonly_fields = VirtualMachine.PUBLIC_FIELDS
    exclude = ("spec",)
    change_form_template = "admin/hypervisors/virtualmachine/change_form.html"

    def get_queryset(self, request):
        return vms.scope(request.user, super().get_queryset(request))

    def get_urls(self):
        return [
            path(
                "<int:pk>/act/",
                self.admin_site.admin_view(self.act_view),
                name="hypervisors_virtualmachine_act",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        vm = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if vm is not None:
            offered = services.capabilities(vm.hypervisor) if vm.platform_id else []
            extra_context.update(
                act_url=reverse("admin:hypervisors_virtualmachine_act", args=[vm.pk]),
                may_power="power" in offered and request.user.has_perm("hypervisors.operate_vm"),
                may_delete="delete_vm" in offered
                and request.user.has_perm("hypervisors.delete_vm"),
                operations=vm.operations.order_by("-created_at")[:20],
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def act_view(self, request, pk: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        vm = get_object_or_404(self.get_queryset(request), pk=pk)
        back = HttpResponseRedirect(reverse("admin:hypervisors_virtualmachine_change", args=[pk]))
        what = request.POST.get("action", "")
        reason = request.POST.get("reason", "")[:1000]
        actor = Actor.of(request.user)
        try:
            if what in POWER_ACTIONS:
                operation = vms.power(vm.pk, actor, what, reason=reason)
            elif what == "delete":
                operation = vms.delete(vm.pk, actor, reason=reason)
            else:
                messages.error(request, f"Unknown action {what[:40]!r}.")
                return back
        except gate.ApprovalRequired as exc:
            _file(request, exc, f"{vm}: {what}")
        except (ValidationError, TransitionError) as exc:
            _refusal(request, exc)
        else:
            operation.refresh_from_db()
            messages.info(request, f"{vm}: {what} {operation.get_status_display().lower()}.")
        return back


@admin.register(HypervisorTemplate)
class HypervisorTemplateAdmin(HiddenFieldsAdminMixin, ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("name", "hypervisor", "disk_bytes", "present", "last_seen_at")
    list_filter = ("present",)
    search_fields = ("name",)

    def get_queryset(self, request):
        return super().get_queryset(request).filter(hypervisor__in=services.scope(request.user))


@admin.register(HypervisorOperation)
class HypervisorOperationAdmin(HiddenFieldsAdminMixin, ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("id", "kind", "hypervisor", "vm", "status", "attempts", "error", "created_at")
    list_filter = ("kind", "status")
    exclude = ("params",)

    def get_queryset(self, request):
        return super().get_queryset(request).filter(hypervisor__in=services.scope(request.user))
