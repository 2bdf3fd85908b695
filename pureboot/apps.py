from django.apps import AppConfig


class PurebootConfig(AppConfig):
    """Project-wide pieces: roles, bootstrap commands."""

    name = "pureboot"
    verbose_name = "PureBoot"
