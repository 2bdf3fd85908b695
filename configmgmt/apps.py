from django.apps import AppConfig


class ConfigmgmtConfig(AppConfig):
    name = "configmgmt"
    verbose_name = "Configuration management"
