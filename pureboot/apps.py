from django.apps import AppConfig


class PurebootConfig(AppConfig):
    """Project-wide pieces: roles, bootstrap commands."""

    name = "pureboot"
    verbose_name = "PureBoot"

    def ready(self) -> None:
        # django-axes announces lockouts by signal, its one integration point.
        from axes.signals import user_locked_out

        from .signin import audit_lockout

        user_locked_out.connect(audit_lockout, dispatch_uid="pureboot-audit-lockout")
