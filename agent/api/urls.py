from django.urls import re_path

from pureboot.api.routers import OptionalSlashRouter

from .views import (
    AgentJobViewSet,
    DeprovisionView,
    HeartbeatView,
    ImageView,
    JobView,
    LogView,
    MigrateView,
    MigrationViewSet,
    StepView,
    WipeCertificateViewSet,
)

router = OptionalSlashRouter()
router.register("wipe-certificates", WipeCertificateViewSet, basename="wipecertificate")
router.register("agent-jobs", AgentJobViewSet, basename="agentjob")
router.register("migrations", MigrationViewSet, basename="migration")

urlpatterns = [
    re_path(r"^agent/job/?$", JobView.as_view(), name="agent-job"),
    re_path(
        r"^agent/jobs/(?P<pk>\d{1,18})/steps/(?P<index>\d{1,4})/?$",
        StepView.as_view(),
        name="agent-step",
    ),
    re_path(
        r"^agent/jobs/(?P<pk>\d{1,18})/heartbeat/?$", HeartbeatView.as_view(), name="agent-beat"
    ),
    re_path(r"^agent/jobs/(?P<pk>\d{1,18})/log/?$", LogView.as_view(), name="agent-log"),
    re_path(r"^agent/jobs/(?P<pk>\d{1,18})/image/?$", ImageView.as_view(), name="agent-image"),
    re_path(r"^deprovision/?$", DeprovisionView.as_view(), name="deprovision"),
    re_path(r"^migrate/?$", MigrateView.as_view(), name="migrate"),
    *router.urls,
]
