from pureboot.api.routers import OptionalSlashRouter

from .views import BootRecordViewSet

router = OptionalSlashRouter()
router.register("boots", BootRecordViewSet, basename="bootrecord")

urlpatterns = router.urls
