from django.apps import AppConfig


class BootserveConfig(AppConfig):
    name = "bootserve"
