"""API tokens and sessions die with trust.

Every JWT carries the generation (``gen``) of its user's tokens when it was
issued (:class:`TokenObtainPairSerializer`); an access token is accepted
(:class:`JWTAuthentication`) and a refresh token exchanged
(:class:`TokenRefreshSerializer`) only while that generation is current.
:func:`revoke` raises it and deletes the user's sessions, so every token and
sign-in they had stops working at once. It runs when the password changes,
when the account is deactivated, and when a role is taken away
(:mod:`accounts.apps` connects it to Django's user model, which the admin,
``changepassword`` and directory sign-in all write).
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import exceptions
from rest_framework_simplejwt import authentication, serializers
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings

from audit import services as audit

from .models import TokenEpoch

log = logging.getLogger(__name__)
CLAIM = "gen"
REVOKED = "This token was revoked (password, status or roles changed); sign in again."


def current(user) -> int:
    cached = getattr(user, "_pureboot_token_gen", None)
    if cached is None:
        cached = TokenEpoch.objects.filter(user=user).values_list("value", flat=True).first() or 0
        user._pureboot_token_gen = cached
    return cached


def revoke(user, why: str, actor: str = "system") -> None:
    """End every token and session of ``user`` now; an audit event says why."""
    with transaction.atomic():
        epoch, _ = TokenEpoch.objects.get_or_create(user=user)
        TokenEpoch.objects.filter(pk=epoch.pk).update(value=F("value") + 1)
        ended = _end_sessions(user.pk)
        audit.record(
            actor=actor,
            action="auth.tokens_revoked",
            object_type="auth.user",
            object_id=user.pk,
            message=why,
            details={"username": user.get_username(), "sessions_ended": ended},
        )
    user.__dict__.pop("_pureboot_token_gen", None)
    log.info("tokens and sessions of %s revoked: %s", user.get_username(), why)


def _end_sessions(user_id: int) -> int:
    ended = 0
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user_id):
            session.delete()
            ended += 1
    return ended


class TokenObtainPairSerializer(serializers.TokenObtainPairSerializer):
    @classmethod
    def get_token(cls, user):
        token = super().get_token(user)
        token[CLAIM] = current(user)
        return token


class TokenRefreshSerializer(serializers.TokenRefreshSerializer):
    def validate(self, attrs):
        refresh = self.token_class(attrs["refresh"])
        user_id = refresh.payload.get(api_settings.USER_ID_CLAIM)
        user = (
            get_user_model()
            .objects.filter(**{api_settings.USER_ID_FIELD: user_id}, is_active=True)
            .first()
        )
        if user is None or refresh.payload.get(CLAIM) != current(user):
            raise InvalidToken(REVOKED)
        return super().validate(attrs)


class JWTAuthentication(authentication.JWTAuthentication):
    def get_user(self, validated_token):
        user = super().get_user(validated_token)
        if validated_token.get(CLAIM) != current(user):
            raise exceptions.AuthenticationFailed(REVOKED, code="token_revoked")
        return user
