from django.apps import AppConfig


class PurebootConfig(AppConfig):
    """The project package: settings, URLs, the Celery app and project-wide commands.

    It holds no models; its migrations are the history of records that now
    live in the accounts, credentials and systemsettings apps.
    """

    name = "pureboot"
    verbose_name = "PureBoot"
