"""Create the roles and, on first start only, the initial administrator."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.roles import sync_roles
from workflows import imagefiles


class Command(BaseCommand):
    help = (
        "Create or refresh the Admin, Operator, Auditor and User roles. On first start "
        "(no user exists yet) also create the superuser 'admin' with a random password, "
        "print it once and store it in var/initial_admin_password (mode 600)."
    )

    def handle(self, *args, **options):
        sync_roles(Group, Permission)
        # The throttles' shared store when no Redis is configured (a no-op with Redis).
        call_command("createcachetable", verbosity=0)
        swept = imagefiles.sweep_incoming()
        if swept:
            self.stdout.write(f"Removed {swept} abandoned upload file(s).")
        password_file = settings.VAR_DIR / "initial_admin_password"
        User = get_user_model()
        with transaction.atomic():
            if User.objects.exists():
                self.stdout.write("Roles up to date; users exist, no initial admin created.")
                return
            password = secrets.token_urlsafe(18)
            user = User.objects.create_superuser("admin", email="", password=password)
            user.groups.add(Group.objects.get(name="Admin"))
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(password + "\n")
            os.chmod(password_file, 0o600)
        self.stdout.write(self.style.SUCCESS("Created the initial administrator."))
        self.stdout.write(f"  user:     admin\n  password: {password}")
        self.stdout.write(f"  (shown once; also stored in {password_file}, mode 600)")
