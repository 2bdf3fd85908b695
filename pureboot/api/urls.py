from .routers import OptionalSlashRouter
from .system import EmergencyAccessViewSet, SettingViewSet
from .views import CredentialViewSet

router = OptionalSlashRouter()
router.register("credentials", CredentialViewSet, basename="credential")
router.register("settings", SettingViewSet, basename="systemsetting")
router.register("emergency-access", EmergencyAccessViewSet, basename="emergencygrant")

urlpatterns = router.urls
