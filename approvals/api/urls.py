from django.urls import re_path

from pureboot.api.routers import OptionalSlashRouter

from .views import ApprovalRequestViewSet, NodeApproveView

router = OptionalSlashRouter()
router.register("approvals", ApprovalRequestViewSet, basename="approvalrequest")

urlpatterns = [
    re_path(r"^nodes/(?P<pk>\d{1,18})/approve/?$", NodeApproveView.as_view(), name="node-approve"),
    *router.urls,
]
