"""Root URLs: admin, single sign-on (OIDC, SAML), the REST API under /api/v1/, its schema
and docs, and /metrics for Prometheus."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from mozilla_django_oidc.views import OIDCLogoutView

from accounts import oidc, saml_views
from accounts.api.auth import ThrottledTokenObtainPairView, ThrottledTokenRefreshView
from approvals.metrics import ApprovalQueueCollector
from bootserve.api import NodePreviewView
from bootserve.views import grub_http, next_instructions
from dashboard.api.views import NodeTimelineView
from nodes.metrics import FleetCollector

from .metrics import MetricsView


class DocsView(SpectacularSwaggerView):
    """The Swagger page; it answers GET and HEAD only (OPTIONS has no page to render)."""

    http_method_names = ["get", "head"]


admin.site.site_header = "PureBoot"
admin.site.site_title = "PureBoot"
admin.site.index_title = "Provisioning"

api_v1 = [
    re_path(r"^auth/token/?$", ThrottledTokenObtainPairView.as_view(), name="token_obtain_pair"),
    re_path(r"^auth/token/refresh/?$", ThrottledTokenRefreshView.as_view(), name="token_refresh"),
    re_path(r"^schema/?$", SpectacularAPIView.as_view(), name="schema"),
    re_path(r"^docs/?$", DocsView.as_view(url_name="schema"), name="docs"),
    path("", include("nodes.api.urls")),
    path("", include("audit.api.urls")),
    # Before workflows': /templates/sync is not an image template's id.
    path("", include("hypervisors.api.urls")),
    path("", include("workflows.api.urls")),
    path("", include("approvals.api.urls")),
    path("", include("credentials.api.urls")),
    path("", include("systemsettings.urls")),
    path("", include("accounts.api.urls")),
    path("", include("agent.api.urls")),
    path("", include("configmgmt.api.urls")),
    path("", include("bootserve.api.urls")),
    path("", include("webhooks.api.urls")),
    re_path(r"^next/?$", next_instructions, name="next"),
    re_path(r"^nodes/(?P<pk>\d{1,18})/preview/?$", NodePreviewView.as_view(), name="node-preview"),
    re_path(
        r"^nodes/(?P<pk>\d{1,18})/timeline/?$", NodeTimelineView.as_view(), name="node-timeline"
    ),
]

# OpenID Connect (mozilla-django-oidc's URL names); 404 unless configured.
oidc_urls = [
    path("authenticate/", oidc.AuthenticateView.as_view(), name="oidc_authentication_init"),
    path("callback/", oidc.CallbackView.as_view(), name="oidc_authentication_callback"),
    path("logout/", OIDCLogoutView.as_view(), name="oidc_logout"),
]

# SAML 2.0 (pysaml2); 404 unless configured.
saml_urls = [
    path("login/", saml_views.LoginView.as_view(), name="saml_login"),
    path("acs/", saml_views.AssertionConsumerView.as_view(), name="saml_acs"),
    path("metadata/", saml_views.MetadataView.as_view(), name="saml_metadata"),
]

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    # Before the admin's own URLs: its catch-all would answer /admin/dashboard/.
    path("admin/dashboard/", include("dashboard.urls")),
    path("admin/", admin.site.urls),
    path("oidc/", include(oidc_urls)),
    path("saml/", include(saml_urls)),
    path("api/v1/", include(api_v1)),
    path("boot/", include("bootserve.urls")),
    # The ARM64 GRUB after a UEFI HTTP Boot: its prefix at the site root.
    path("grub-arm64/<path:path>", grub_http, name="grub-arm64-http"),
    path("approvals/", include("approvals.urls")),
    # Prometheus: this process's (or every gunicorn worker's) counters and the
    # fleet and approval queue read from the database; loopback and
    # PUREBOOT_METRICS_ALLOW / PUREBOOT_METRICS_TOKEN only.
    path(
        "metrics",
        MetricsView.as_view(collectors=(FleetCollector(), ApprovalQueueCollector())),
        name="metrics",
    ),
]

handler404 = "pureboot.api.errors.not_found"
handler500 = "pureboot.api.errors.server_error"
