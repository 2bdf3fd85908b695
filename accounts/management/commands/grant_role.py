"""Give or take an account's role on the host (before two people can approve)."""

from __future__ import annotations

import getpass
import socket

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts import services
from accounts.roles import ROLES
from pureboot import gate


class Command(BaseCommand):
    help = (
        "Give USERNAME the role ROLE (or take it away with --remove), on the PureBoot host. "
        "A role that can approve (Admin, Operator, Auditor) is given here only while fewer "
        "than two other people can approve; after that it is a four-eye request in the "
        "admin or the API. Every change is an audit event naming the host account."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("role", choices=sorted(ROLES))
        parser.add_argument("--remove", action="store_true", help="Take the role away.")
        parser.add_argument("--reason", default="", help="Why (kept in the audit trail).")

    def handle(self, *args, username: str, role: str, remove: bool, reason: str, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No account {username!r}.")
        roles = services.roles_of(user)
        roles = roles - {role} if remove else roles | {role}
        actor = f"host:{getpass.getuser()}@{socket.gethostname()}"
        try:
            added = services.set_roles(user.pk, sorted(roles), actor, host=True, reason=reason)
        except (gate.Forbidden, ValidationError) as exc:
            raise CommandError("; ".join(getattr(exc, "messages", [str(exc)]))) from None
        if remove:
            self.stdout.write(f"{username}: roles now {', '.join(sorted(roles)) or 'none'}.")
        elif added:
            self.stdout.write(
                f"{username}: given {role}; roles now {', '.join(sorted(roles))}. "
                "It may approve requests once its cooling-off period has passed."
            )
        else:
            self.stdout.write(f"{username} already holds {role}.")
