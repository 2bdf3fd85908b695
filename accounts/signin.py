"""Sign-in protection: lockouts are audited and answered 429 with Retry-After; tokens and
sessions end when a user's password, status or roles change."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import m2m_changed, post_save, pre_save
from django.http import HttpResponse, JsonResponse

from audit import services as audit

from . import tokens

log = logging.getLogger(__name__)


def audit_lockout(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    """django-axes locked out a username or address: record who was tried, from where."""
    username = (username or "")[:150]
    with transaction.atomic():
        audit.record(
            actor=f"anonymous@{ip_address or 'unknown'}",
            action="auth.lockout",
            object_type="auth.user",
            object_id=username,
            message="Too many failed sign-ins; locked out for a while.",
            details={"username": username, "ip_address": ip_address or ""},
        )
    log.warning("sign-in lockout: username %r from %s", username, ip_address)


def retry_after_seconds(request=None) -> int:
    """How long a locked-out client waits, in whole seconds."""
    cool_off = settings.AXES_COOLOFF_TIME
    return max(1, int(cool_off.total_seconds())) if cool_off else 3600


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    """django-axes' answer to a locked-out sign-in: 429 with Retry-After, on every page."""
    seconds = retry_after_seconds(request)
    message = (
        f"Too many failed sign-ins for this account from this address; try again in "
        f"{max(1, seconds // 60)} minutes."
    )
    wants_json = "json" in request.META.get("HTTP_ACCEPT", "") or request.path.startswith("/api/")
    if wants_json:
        response = JsonResponse({"detail": message, "code": "locked_out"}, status=429)
    else:
        response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(seconds)
    return response


class _TrustWatch:
    """Revoke a user's tokens and sessions when their password, status or roles change."""

    def connect(self) -> None:
        User = get_user_model()
        pre_save.connect(self.remember, sender=User, dispatch_uid="pureboot-trust-pre")
        post_save.connect(self.compare, sender=User, dispatch_uid="pureboot-trust-post")
        m2m_changed.connect(
            self.groups_changed, sender=User.groups.through, dispatch_uid="pureboot-trust-groups"
        )

    @staticmethod
    def remember(sender, instance, update_fields=None, **kwargs) -> None:
        if instance.pk is None or (update_fields and set(update_fields) <= {"last_login"}):
            instance._pureboot_trust_before = None
            return
        instance._pureboot_trust_before = (
            sender.objects.filter(pk=instance.pk).values("password", "is_active").first()
        )

    @staticmethod
    def compare(sender, instance, created=False, **kwargs) -> None:
        before = getattr(instance, "_pureboot_trust_before", None)
        instance._pureboot_trust_before = None
        if created or not before:
            return
        if before["password"] != instance.password:
            tokens.revoke(instance, "password changed")
        elif before["is_active"] and not instance.is_active:
            tokens.revoke(instance, "account deactivated")

    @staticmethod
    def groups_changed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
        if action not in ("post_remove", "post_clear") or (action == "post_remove" and not pk_set):
            return
        User = get_user_model()
        if reverse:  # group.user_set.remove(...): instance is the group
            for user in User.objects.filter(pk__in=pk_set or ()):
                tokens.revoke(user, f"removed from {instance.name}")
        elif isinstance(instance, User):
            tokens.revoke(instance, "a role or group was taken away")


revoke_on_trust_change = _TrustWatch()
