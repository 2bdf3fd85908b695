from django.apps import AppConfig


class SystemSettingsConfig(AppConfig):
    """System settings that change at run time, through approved requests."""

    name = "systemsettings"
    verbose_name = "System settings"
