"""Refresh the roles: Admin manages credentials, Auditor reads their metadata, Operator their names."""

from django.db import migrations

from pureboot.migrations import _roles


class Migration(migrations.Migration):
    dependencies = [("pureboot", "0004_credential")]

    operations = [migrations.RunPython(_roles.create_roles, migrations.RunPython.noop)]
