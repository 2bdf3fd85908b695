"""Template context that the admin's sign-in page needs."""

from django.conf import settings


def signin(request) -> dict[str, bool]:
    """Which single sign-on links to offer: OpenID Connect, SAML (each when configured)."""
    return {
        "sso_enabled": settings.PUREBOOT_OIDC_ENABLED,
        "saml_enabled": settings.PUREBOOT_SAML_ENABLED,
    }
