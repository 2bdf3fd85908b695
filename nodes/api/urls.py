from pureboot.api.routers import OptionalSlashRouter

from .views import NodeViewSet, SiteViewSet, TagViewSet

router = OptionalSlashRouter()
router.register("nodes", NodeViewSet, basename="node")
router.register("sites", SiteViewSet, basename="site")
router.register("tags", TagViewSet, basename="tag")

urlpatterns = router.urls
