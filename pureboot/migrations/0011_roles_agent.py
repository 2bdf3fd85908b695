"""Roles: everyone who sees nodes sees their agent jobs and wipe certificates."""

from django.db import migrations

from pureboot.migrations import _roles


class Migration(migrations.Migration):
    dependencies = [
        ("pureboot", "0010_records_move_to_their_apps"),
        ("agent", "0001_initial"),
    ]

    operations = [migrations.RunPython(_roles.create_roles, migrations.RunPython.noop)]
