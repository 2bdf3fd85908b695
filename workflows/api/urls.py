from django.urls import path, re_path

from pureboot.api.routers import OptionalSlashRouter

from .images import TemplateViewSet
from .views import InstallFileView, NodePreviewView, ReportView, WorkflowViewSet

router = OptionalSlashRouter()
router.register("workflows", WorkflowViewSet, basename="workflow")
router.register("templates", TemplateViewSet, basename="template")

urlpatterns = [
    re_path(r"^report/?$", ReportView.as_view(), name="report"),
    re_path(r"^nodes/(?P<pk>\d{1,18})/preview/?$", NodePreviewView.as_view(), name="node-preview"),
    path("install/<str:token>/<str:name>", InstallFileView.as_view(), name="install-file"),
    *router.urls,
]
