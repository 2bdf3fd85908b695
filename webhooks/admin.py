"""Webhooks in the admin: subscriptions saved through the same services as the API
(audited), the secret shown once on a page of its own, deliveries read-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from audit.admin_mixins import ReadOnlyAdmin
from audit.admin_scope import HiddenFieldsAdminMixin
from nodes.permissions import accessible_sites
from nodes.transitions import Actor

from . import services
from .choices import EventType
from .models import Delivery, Subscription


class SubscriptionForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=EventType.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = Subscription
        fields = ("name", "url", "events", "site", "enabled", "description")


@admin.register(Subscription)
class SubscriptionAdmin(HiddenFieldsAdminMixin, admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ("name", "url", "event_list", "site", "enabled", "created_by")
    list_filter = ("enabled",)
    search_fields = ("name", "url")
    exclude = ("secret_ciphertext",)
    hidden_fields = ("secret_ciphertext",)
    actions = ("send_test_ping",)

    def get_queryset(self, request):
        return services.scope(request.user, super().get_queryset(request))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "site":
            kwargs["queryset"] = accessible_sites(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="events")
    def event_list(self, obj: Subscription) -> str:
        return ", ".join(obj.events)

    def save_model(self, request, obj, form, change):
        actor = Actor.of(request.user)
        fields = {
            f: form.cleaned_data[f] for f in services.EDITABLE_FIELDS if f in form.cleaned_data
        }
        if change:
            saved = services.update_subscription(obj.pk, actor, fields)
        else:
            saved, request._pureboot_webhook_secret = services.create_subscription(actor, fields)
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        services.delete_subscription(obj.pk, Actor.of(request.user))

    def has_delete_permission(self, request, obj=None) -> bool:
        # One at a time, through the audited service.
        return obj is not None and super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        if not request.user.has_perm("webhooks.test_subscription"):
            actions.pop("send_test_ping", None)
        return actions

    def response_add(self, request, obj, post_url_continue=None):
        # The secret goes into this one page, never into a message, cookie or session.
        return self._secret_page(request, obj, request._pureboot_webhook_secret)

    def _secret_page(self, request, obj: Subscription, secret: str):
        context = {
            **self.admin_site.each_context(request),
            "title": f"Signing secret of {obj.name}",
            "subscription": obj,
            "secret": secret,
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/webhooks/secret.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def get_urls(self):
        return [
            path(
                "<int:pk>/rotate-secret/",
                self.admin_site.admin_view(self.rotate_view),
                name="webhooks_subscription_rotate",
            ),
            *super().get_urls(),
        ]

    def rotate_view(self, request, pk: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("webhooks.change_subscription"):
            raise PermissionDenied
        subscription = get_object_or_404(self.get_queryset(request), pk=pk)
        changed, secret = services.rotate_secret(subscription.pk, Actor.of(request.user))
        return self._secret_page(request, changed, secret)

    @admin.action(description="Send a test ping")
    def send_test_ping(self, request, queryset):
        for subscription in queryset:
            try:
                delivery = services.ping(subscription.pk, Actor.of(request.user))
            except services.WebhookError as exc:
                messages.error(request, str(exc))
                continue
            services.queue(delivery.pk)
            messages.success(request, f"Ping #{delivery.pk} queued for {subscription.name}.")


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = (
        "id",
        "subscription",
        "event_type",
        "audit_seq",
        "status",
        "attempts",
        "response_code",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event_type")
    search_fields = ("subscription__name",)
    readonly_fields = tuple(f.name for f in Delivery._meta.fields)
    actions = ("redeliver",)

    def get_queryset(self, request):
        return services.scope_deliveries(
            request.user, super().get_queryset(request).select_related("subscription")
        )

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not request.user.has_perm("webhooks.test_subscription"):
            actions.pop("redeliver", None)
        return actions

    @admin.action(description="Send again")
    def redeliver(self, request, queryset):
        for delivery in queryset:
            try:
                again = services.redeliver(delivery.pk, Actor.of(request.user), queryset)
            except (services.WebhookError, ValidationError) as exc:
                messages.error(request, str(exc))
                continue
            services.queue(again.pk)
            messages.success(request, f"Delivery #{again.pk} queued again.")
        return HttpResponseRedirect(reverse("admin:webhooks_delivery_changelist"))
