"""The dashboard's pages, mounted under /admin/dashboard/ (the admin's sign-in and look)."""

from django.contrib import admin
from django.urls import path, re_path

from . import views

app_name = "dashboard"
urlpatterns = [
    path("", admin.site.admin_view(views.index), name="index"),
    path("panel/<slug:name>/", admin.site.admin_view(views.panel), name="panel"),
    # At most 18 digits: a longer id is a 404, not a database overflow.
    re_path(
        r"^nodes/(?P<node_id>\d{1,18})/history/$",
        admin.site.admin_view(views.node_history),
        name="node-history",
    ),
]
