"""JWT endpoints: their own throttle scope, tokens that carry their generation
(accounts.tokens), and 429 with Retry-After for a locked-out sign-in."""

from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from ..signin import lockout_response


class ThrottledTokenObtainPairView(TokenObtainPairView):
    throttle_scope = "auth"

    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        except Exception:
            # django-axes marks the request it refused; it answers "no user",
            # which simplejwt alone would call a plain 401.
            if getattr(request, "axes_locked_out", False):
                return lockout_response(request._request)
            raise


class ThrottledTokenRefreshView(TokenRefreshView):
    throttle_scope = "auth"
