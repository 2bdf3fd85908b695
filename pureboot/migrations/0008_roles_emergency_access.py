"""Refresh the roles: Operators may ask for destructive node actions (a second
person approves), Admins change system settings and grant emergency access,
Admins and Auditors clear the audit trail together, everyone may ask for
emergency access for themselves."""

from django.db import migrations

from pureboot.migrations import _roles


class Migration(migrations.Migration):
    dependencies = [
        ("pureboot", "0007_settings_emergency_access"),
        ("audit", "0003_clear_permission"),
    ]

    operations = [migrations.RunPython(_roles.create_roles, migrations.RunPython.noop)]
