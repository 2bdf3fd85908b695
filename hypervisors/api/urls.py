from django.urls import re_path

from pureboot.api.routers import OptionalSlashRouter

from .views import HypervisorViewSet, OperationViewSet, TemplateSyncView, VirtualMachineViewSet

router = OptionalSlashRouter()
router.register("hypervisors", HypervisorViewSet, basename="hypervisor")
router.register("vms", VirtualMachineViewSet, basename="vm")
router.register("hypervisor-operations", OperationViewSet, basename="hypervisoroperation")

urlpatterns = [
    re_path(r"^templates/sync/?$", TemplateSyncView.as_view(), name="templates-sync"),
    *router.urls,
]
