"""Refresh the roles: workflow versions and runs are readable by every role."""

from django.db import migrations

from pureboot.migrations import _roles


class Migration(migrations.Migration):
    dependencies = [
        ("pureboot", "0001_roles"),
        ("workflows", "0002_versions_and_runs"),
    ]

    operations = [migrations.RunPython(_roles.create_roles, migrations.RunPython.noop)]
