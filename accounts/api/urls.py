from pureboot.api.routers import OptionalSlashRouter

from .views import EmergencyAccessViewSet

router = OptionalSlashRouter()
router.register("emergency-access", EmergencyAccessViewSet, basename="emergencygrant")

urlpatterns = router.urls
