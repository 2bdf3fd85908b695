"""Roles: everyone who sees nodes sees their hardware migrations."""

from django.db import migrations

from pureboot.migrations import _roles


class Migration(migrations.Migration):
    dependencies = [
        ("pureboot", "0011_roles_agent"),
        ("nodes", "0007_migration"),
    ]

    operations = [migrations.RunPython(_roles.create_roles, migrations.RunPython.noop)]
