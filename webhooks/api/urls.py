from pureboot.api.routers import OptionalSlashRouter

from .views import DeliveryViewSet, SubscriptionViewSet

router = OptionalSlashRouter()
# Registered first: "webhooks/deliveries" is not a subscription id.
router.register("webhooks/deliveries", DeliveryViewSet, basename="webhookdelivery")
router.register("webhooks", SubscriptionViewSet, basename="webhooksubscription")

urlpatterns = router.urls
