"""OpenAPI description of PureBoot's JWT authentication (simplejwt's, with token generations)."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class PureBootJWTScheme(SimpleJWTScheme):
    target_class = "accounts.tokens.JWTAuthentication"
