from django.urls import path, re_path

from . import views

urlpatterns = [
    re_path(r"^ipxe/?$", views.boot_ipxe, name="boot-ipxe"),
    path("files/<path:path>", views.boot_file, name="boot-file"),
    path("http/<path:path>", views.http_boot_file, name="boot-http"),
]
