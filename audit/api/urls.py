from pureboot.api.routers import OptionalSlashRouter

from .views import AuditEventViewSet

router = OptionalSlashRouter()
router.register("audit", AuditEventViewSet, basename="auditevent")

urlpatterns = router.urls
