"""Refresh the roles: approval requests (every role reads those in its sites)."""

from django.db import migrations

from pureboot.migrations import _roles


class Migration(migrations.Migration):
    dependencies = [
        ("pureboot", "0005_roles_credentials"),
        ("approvals", "0001_approval_requests"),
    ]

    operations = [migrations.RunPython(_roles.create_roles, migrations.RunPython.noop)]
