from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Who may act: roles, sign-in (local, LDAP, OIDC, SAML), lockouts, emergency grants."""

    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # django-axes announces lockouts by signal, its one integration point.
        from axes.signals import user_locked_out

        from .signin import audit_lockout, revoke_on_trust_change

        user_locked_out.connect(audit_lockout, dispatch_uid="pureboot-audit-lockout")
        # Passwords, the active flag and group membership are written by
        # Django's own admin, its changepassword command and the directory
        # back-ends as well as by our services: a receiver on the user model
        # is the one place that sees every such write.
        revoke_on_trust_change.connect()
        from .api import schema  # noqa: F401  (registers the OpenAPI auth extension)
