"""Roles: everyone who views the registry views config runs and Salt/Chef registrations."""

from django.db import migrations

from pureboot.migrations import _roles


class Migration(migrations.Migration):
    dependencies = [
        ("configmgmt", "0001_config_runs_and_registrations"),
        ("pureboot", "0013_roles_hypervisors"),
    ]

    operations = [migrations.RunPython(_roles.create_roles, migrations.RunPython.noop)]
