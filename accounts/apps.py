from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Who may act: roles, sign-in (local, LDAP, OIDC), lockouts, emergency grants."""

    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # django-axes announces lockouts by signal, its one integration point.
        from axes.signals import user_locked_out

        from .signin import audit_lockout

        user_locked_out.connect(audit_lockout, dispatch_uid="pureboot-audit-lockout")
