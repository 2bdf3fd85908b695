from pureboot.api.routers import OptionalSlashRouter

from .views import CredentialViewSet

router = OptionalSlashRouter()
router.register("credentials", CredentialViewSet, basename="credential")

urlpatterns = router.urls
