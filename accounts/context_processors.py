"""Template context that the admin's sign-in page needs."""

from django.conf import settings


def signin(request) -> dict[str, bool]:
    """Whether to offer "Sign in with single sign-on" (OpenID Connect configured)."""
    return {"sso_enabled": settings.PUREBOOT_OIDC_ENABLED}
