from pureboot.api.routers import OptionalSlashRouter

from .api import SettingViewSet

router = OptionalSlashRouter()
router.register("settings", SettingViewSet, basename="systemsetting")

urlpatterns = router.urls
