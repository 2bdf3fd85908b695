"""Workflow admin: edit the YAML; each save that changes it is a new immutable version."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse

from audit.admin_mixins import ReadOnlyAdmin
from audit.admin_scope import HiddenFieldsAdminMixin
from nodes.permissions import scope_nodes
from nodes.services import Actor

from .checks import check_definition
from .definitions import DefinitionError, parse
from .models import (
    BootImage,
    ImageTemplate,
    ImageTemplateVersion,
    Workflow,
    WorkflowRun,
    WorkflowVersion,
)
from .services import WorkflowInUse, delete_workflow, save_workflow


class WorkflowForm(forms.ModelForm):
    content = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 30, "cols": 100, "style": "font-family:monospace"}),
        strip=False,
        help_text="The workflow in YAML. Saving changed content creates a new version.",
    )

    class Meta:
        model = Workflow
        fields = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        latest = self.instance.latest_version if self.instance.pk else None
        if latest is not None:
            self.fields["content"].initial = latest.content

    def clean_content(self):
        content = self.cleaned_data["content"]
        try:
            self.definition = parse(content)
            self.warnings = check_definition(self.definition).warnings
        except DefinitionError as exc:
            raise forms.ValidationError(str(exc)) from None
        if self.instance.pk and self.definition.name != self.instance.name:
            raise forms.ValidationError(
                f"The document names {self.definition.name!r}; this workflow is "
                f"{self.instance.name!r}. Renaming is not supported."
            )
        return content


class VersionInline(admin.TabularInline):
    model = WorkflowVersion
    fields = ("number", "content_hash", "author_name", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-number",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    form = WorkflowForm
    list_display = ("name", "description", "latest", "updated_at", "archived_at")
    list_filter = ("archived_at",)
    search_fields = ("name", "description")
    readonly_fields = ("name", "description", "created_at", "updated_at")
    inlines = (VersionInline,)

    @admin.display(description="latest version")
    def latest(self, obj: Workflow):
        version = obj.latest_version
        return f"v{version.number}" if version else "-"

    def get_fields(self, request, obj=None):
        return ("content",) if obj is None else ("name", "description", "content", "updated_at")

    def save_model(self, request, obj, form, change):
        result = save_workflow(
            form.cleaned_data["content"], Actor.of(request.user), definition=form.definition
        )
        obj.pk = result.workflow.pk
        obj.name = result.workflow.name
        if not result.created:
            messages.info(request, "Content unchanged: no new version was created.")
        for warning in result.warnings:
            messages.warning(request, warning)

    def save_related(self, request, form, formsets, change):
        for formset in formsets:
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def delete_model(self, request, obj):
        try:
            outcome = delete_workflow(obj.pk, Actor.of(request.user))
        except WorkflowInUse as exc:
            messages.error(request, f"Not deleted: {exc}")
            return
        request._pureboot_deleted = outcome == "deleted"
        if outcome == "deleted":
            super().log_deletions(request, [obj])
        else:
            messages.warning(
                request, f"Not deleted: {obj.name} is kept as archived (retired nodes ran it)."
            )

    # The admin would write its "Deleted" history entry and say "deleted
    # successfully" whatever the service decided: both follow the outcome.
    def log_deletions(self, request, queryset):
        return None

    def response_delete(self, request, obj_display, obj_id):
        if getattr(request, "_pureboot_deleted", False):
            return super().response_delete(request, obj_display, obj_id)
        return HttpResponseRedirect(reverse("admin:workflows_workflow_changelist"))

    def has_delete_permission(self, request, obj=None) -> bool:
        # Bulk deletion would bypass the in-use check; delete one at a time.
        return obj is not None and super().has_delete_permission(request, obj)


@admin.register(WorkflowRun)
class WorkflowRunAdmin(HiddenFieldsAdminMixin, ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("id", "node", "version", "status", "progress", "started_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("node__hostname",)
    readonly_fields = [f.name for f in WorkflowRun._meta.fields if f.name != "token_nonce"]
    exclude = ("token_nonce",)

    def get_queryset(self, request):
        return super().get_queryset(request).filter(node__in=scope_nodes(request.user))


@admin.register(BootImage)
class BootImageAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("name", "family", "version", "arch", "created_at")
    list_filter = ("family", "arch")
    search_fields = ("name", "version")


class TemplateVersionInline(admin.TabularInline):
    model = ImageTemplateVersion
    fields = ("number", "format", "arch", "size", "sha256", "conversion", "author_name")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ImageTemplate)
class ImageTemplateAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("name", "kind", "created_at")
    list_filter = ("kind",)
    search_fields = ("name",)
    inlines = (TemplateVersionInline,)  # deletion goes through the API (in-use check)
