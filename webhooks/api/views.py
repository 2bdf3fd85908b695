"""Webhook API: subscriptions (admins manage, auditors read) and their deliveries."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from nodes.api.views import unique_race_as_400
from nodes.transitions import Actor
from pureboot.api.exceptions import Conflict
from pureboot.api.permissions import ModelPermissions
from pureboot.api.serializers import ErrorSerializer

from .. import services
from ..filtersets import DeliveryFilterSet
from ..models import Delivery, Subscription
from .serializers import (
    WebhookDeliverySerializer,
    WebhookSubscriptionSecretSerializer,
    WebhookSubscriptionSerializer,
)

ERRORS = {
    400: OpenApiResponse(description="invalid input (field errors)"),
    403: OpenApiResponse(ErrorSerializer, description="no permission"),
    404: OpenApiResponse(ErrorSerializer, description="not found among what you may see"),
}
CONFLICT = {409: OpenApiResponse(ErrorSerializer, description="disabled, or still pending")}


class CanTest(ModelPermissions):
    perms_map = {m: ["webhooks.test_subscription"] for m in ModelPermissions.perms_map}


class CanRotate(ModelPermissions):
    perms_map = {m: ["webhooks.change_subscription"] for m in ModelPermissions.perms_map}


class WebhookErrors:
    def handle_exception(self, exc):
        if isinstance(exc, services.WebhookError):
            exc = Conflict(str(exc))
        return super().handle_exception(exc)

    def _actor(self) -> Actor:
        return Actor.of(self.request.user)


class SubscriptionViewSet(WebhookErrors, viewsets.ModelViewSet):
    """Webhook subscriptions. The signing secret is shown once: in the answer to
    creating one and to ``rotate-secret``."""

    serializer_class = WebhookSubscriptionSerializer
    permission_classes = (IsAuthenticated, ModelPermissions)
    filterset_fields = ("name", "enabled")
    ordering_fields = ("name", "created_at")
    ordering = ("name",)
    lookup_value_regex = r"\d{1,18}"
    http_method_names = ("get", "post", "patch", "delete", "head", "options")

    def get_queryset(self):
        return services.scope(self.request.user, Subscription.objects.select_related("site"))

    def get_permissions(self):
        if self.action == "test":
            return [IsAuthenticated(), CanTest()]
        if self.action == "rotate_secret":
            return [IsAuthenticated(), CanRotate()]
        return super().get_permissions()

    def _with_secret(self, subscription: Subscription, secret: str) -> dict:
        data = dict(
            WebhookSubscriptionSerializer(subscription, context=self.get_serializer_context()).data
        )
        data["secret"] = secret
        return data

    @extend_schema(responses={201: WebhookSubscriptionSecretSerializer, **ERRORS})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with unique_race_as_400():
            made, secret = services.create_subscription(self._actor(), serializer.validated_data)
        return Response(self._with_secret(made, secret), status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: WebhookSubscriptionSerializer, **ERRORS})
    def partial_update(self, request, *args, **kwargs):
        subscription = self.get_object()
        serializer = self.get_serializer(subscription, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        with unique_race_as_400():
            changed = services.update_subscription(
                subscription.pk, self._actor(), serializer.validated_data
            )
        return Response(self.get_serializer(changed).data)

    @extend_schema(responses={204: None, **ERRORS})
    def destroy(self, request, *args, **kwargs):
        subscription = self.get_object()
        services.delete_subscription(subscription.pk, self._actor())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: WebhookSubscriptionSecretSerializer, **ERRORS})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """Replace the signing secret; the answer holds the new one, shown this once."""
        subscription = self.get_object()
        changed, secret = services.rotate_secret(subscription.pk, self._actor())
        return Response(self._with_secret(changed, secret))

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer, **ERRORS, **CONFLICT})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Queue a signed ``ping`` to the URL; follow it as a delivery."""
        subscription = self.get_object()
        delivery = services.ping(subscription.pk, self._actor())
        services.queue(delivery.pk)
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class DeliveryViewSet(
    WebhookErrors, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """What was sent to which subscription, newest first, with each outcome."""

    serializer_class = WebhookDeliverySerializer
    permission_classes = (IsAuthenticated, ModelPermissions)
    filterset_class = DeliveryFilterSet
    ordering_fields = ("created_at", "id", "audit_seq")
    ordering = ("-created_at", "-id")
    lookup_value_regex = r"\d{1,18}"

    def get_queryset(self):
        return services.scope_deliveries(
            self.request.user, Delivery.objects.select_related("subscription")
        )

    def get_permissions(self):
        if self.action == "redeliver":
            return [IsAuthenticated(), CanTest()]
        return super().get_permissions()

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer, **ERRORS, **CONFLICT})
    @action(detail=True, methods=["post"])
    def redeliver(self, request, pk=None):
        """Send a finished delivery again (same payload, signed anew, attempts from 1)."""
        delivery = self.get_object()
        again = services.redeliver(delivery.pk, self._actor(), self.get_queryset())
        services.queue(again.pk)
        return Response(WebhookDeliverySerializer(again).data, status=status.HTTP_202_ACCEPTED)
