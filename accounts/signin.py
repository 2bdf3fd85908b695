"""Sign-in protection: failed attempts and lockouts are on the audit record."""

from __future__ import annotations

import logging

from django.db import transaction

from audit import services as audit

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
