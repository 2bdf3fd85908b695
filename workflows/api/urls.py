from django.urls import path, re_path

from pureboot.api.routers import OptionalSlashRouter

from .images import TemplateViewSet
from .offlinejoins import OfflineJoinViewSet
from .views import (
    InstallFileView,
    NodeRunsView,
    ReportView,
    RunLogView,
    WorkflowViewSet,
)

router = OptionalSlashRouter()
router.register("workflows", WorkflowViewSet, basename="workflow")
router.register("templates", TemplateViewSet, basename="template")
router.register("offline-joins", OfflineJoinViewSet, basename="offline-join")

urlpatterns = [
    re_path(r"^report/?$", ReportView.as_view(), name="report"),
    re_path(r"^nodes/(?P<pk>\d{1,18})/runs/?$", NodeRunsView.as_view(), name="node-runs"),
    re_path(
        r"^nodes/(?P<pk>\d{1,18})/runs/(?P<run>\d{1,18})/logs/?$",
        RunLogView.as_view(),
        name="run-logs",
    ),
    path("install/<str:token>/<str:name>", InstallFileView.as_view(), name="install-file"),
    *router.urls,
]
