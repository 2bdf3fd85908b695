from django.urls import re_path

from .views import AnsibleInventoryView, PuppetClassifierView

urlpatterns = [
    re_path(r"^inventory/ansible/?$", AnsibleInventoryView.as_view(), name="inventory-ansible"),
    re_path(
        r"^inventory/puppet/(?P<certname>[^/]{1,300})/?$",
        PuppetClassifierView.as_view(),
        name="inventory-puppet",
    ),
]
