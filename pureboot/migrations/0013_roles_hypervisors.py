"""Roles: hypervisors, their VMs and templates (see accounts.roles)."""

from django.db import migrations

from pureboot.migrations import _roles


class Migration(migrations.Migration):
    dependencies = [
        ("pureboot", "0012_roles_migrations"),
        ("hypervisors", "0001_initial"),
    ]

    operations = [migrations.RunPython(_roles.create_roles, migrations.RunPython.noop)]
