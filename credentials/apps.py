from django.apps import AppConfig


class CredentialsConfig(AppConfig):
    """Encrypted logins PureBoot uses on someone's behalf, and their keys."""

    name = "credentials"
    verbose_name = "Credentials"
