"""Refresh the roles under the moved permission names (credentials.*,
systemsettings.*, accounts.*)."""

from django.db import migrations

from pureboot.migrations import _roles


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("pureboot", "0010_records_move_to_their_apps"),
    ]

    operations = [migrations.RunPython(_roles.create_roles, migrations.RunPython.noop)]
