"""LDAP / Active Directory sign-in: django-auth-ldap plus PureBoot's role rules.

django-auth-ldap binds as the person, finds their groups and creates their
Django user (with no local password). This subclass then sets their roles
from ``PUREBOOT_LDAP_ROLE_GROUPS`` (:func:`accounts.directory.sync_roles`)
and refuses to sign into local accounts or accounts made by single sign-on.

Only imported when ``PUREBOOT_LDAP_SERVER_URI`` is set: django-auth-ldap and
python-ldap are the optional ``ldap`` extra.
"""

from __future__ import annotations

import logging

import ldap
from django.conf import settings
from django.db import IntegrityError, transaction
from django_auth_ldap.backend import LDAPBackend

from . import directory

log = logging.getLogger(__name__)
SOURCE = "ldap"


class PureBootLDAPBackend(LDAPBackend):
    """django-auth-ldap's backend, whose sign-ins also set the person's roles."""

    def get_or_build_user(self, username, ldap_user):
        user, built = super().get_or_build_user(username, ldap_user)
        if built:
            user, built = self._claim(user)
        if not built:
            reason = None
            if directory.is_local_account(user):
                reason = "a local account has this username"
            elif user.oidc_identities.exists() or user.saml_identities.exists():
                reason = "this username belongs to a single sign-on account"
            if reason:
                directory.refuse(username, source=SOURCE, reason=reason)
                # django-auth-ldap turns this into a failed sign-in (no user).
                raise ldap_user.AuthenticationFailed(reason)
        return user, built

    @staticmethod
    def _claim(user):
        """Save a new person's account now, in a savepoint: when another sign-in of
        the same person created it first, use that account instead of failing."""
        user.set_unusable_password()
        try:
            with transaction.atomic():
                user.save()
        except IntegrityError:
            model = type(user)
            return model._default_manager.get_by_natural_key(user.get_username()), False
        return user, True

    def authenticate_ldap_user(self, ldap_user, password):
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is None:
            return None
        try:
            memberships = {dn.lower() for dn in ldap_user.group_dns}
        except ldap.LDAPError as exc:
            # The directory went away between the bind and the group search:
            # no roles can be known, so no sign-in.
            log.warning("LDAP group search failed for %r: %s", user.get_username(), exc)
            return None
        roles = directory.roles_for(memberships, settings.PUREBOOT_LDAP_ROLE_GROUPS)
        try:
            directory.sync_roles(user, roles, source=SOURCE)
        except directory.RolesMissing as exc:
            log.error("LDAP sign-in of %r refused: %s", user.get_username(), exc)
            return None
        return user
