"""Refresh the roles: image templates and boot images (everyone reads; Admin uploads and deletes)."""

from django.db import migrations

from pureboot.migrations import _roles


class Migration(migrations.Migration):
    dependencies = [
        ("pureboot", "0002_roles_workflow_runs"),
        ("workflows", "0004_boot_images"),
    ]

    operations = [migrations.RunPython(_roles.create_roles, migrations.RunPython.noop)]
