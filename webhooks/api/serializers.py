"""Webhook API shapes: field lists and bounds; the rules live in the models and services."""

from __future__ import annotations

from rest_framework import serializers

from nodes.api.serializers import ScopedSiteField

from ..choices import EventType
from ..models import Delivery, Subscription


class WebhookSubscriptionSerializer(serializers.ModelSerializer):
    """A subscription as shown and edited; its secret is never part of it."""

    site = ScopedSiteField(
        slug_field="slug",
        required=False,
        allow_null=True,
        help_text="Only events of this site's nodes; null: every event.",
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices),
        min_length=1,
        max_length=len(EventType.values),
        help_text="Event types to send: " + ", ".join(EventType.values),
    )

    class Meta:
        model = Subscription
        fields = (
            "id",
            "name",
            "url",
            "events",
            "site",
            "enabled",
            "description",
            "created_at",
            "created_by",
            "updated_at",
            "secret_rotated_at",
        )
        read_only_fields = ("created_at", "created_by", "updated_at", "secret_rotated_at")
        # Uniqueness is checked by the model's full_clean in the service.
        extra_kwargs = {"name": {"validators": []}}

    def to_internal_value(self, data):
        if isinstance(data, dict) and "secret" in data:
            raise serializers.ValidationError(
                {
                    "secret": [
                        "PureBoot generates the signing secret and shows it once; "
                        "use POST /api/v1/webhooks/{id}/rotate-secret for a new one."
                    ]
                }
            )
        return super().to_internal_value(data)


class WebhookSubscriptionSecretSerializer(WebhookSubscriptionSerializer):
    """The answer to creating a subscription or rotating its secret: the only time
    the secret is shown."""

    secret = serializers.CharField(
        read_only=True, help_text="The signing secret; store it now, it is not shown again."
    )

    class Meta(WebhookSubscriptionSerializer.Meta):
        fields = (*WebhookSubscriptionSerializer.Meta.fields, "secret")


class WebhookDeliverySerializer(serializers.ModelSerializer):
    subscription = serializers.PrimaryKeyRelatedField(read_only=True)
    subscription_name = serializers.CharField(source="subscription.name", read_only=True)

    class Meta:
        model = Delivery
        fields = (
            "id",
            "subscription",
            "subscription_name",
            "audit_seq",
            "event_type",
            "status",
            "attempts",
            "response_code",
            "response_excerpt",
            "error",
            "next_attempt_at",
            "created_at",
            "last_attempt_at",
            "delivered_at",
            "payload",
        )
        read_only_fields = fields
