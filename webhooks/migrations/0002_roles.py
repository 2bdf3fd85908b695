"""Roles: admins manage webhooks, auditors read them (see accounts.roles)."""

from django.db import migrations

from pureboot.migrations import _roles


class Migration(migrations.Migration):
    dependencies = [
        ("pureboot", "0013_roles_hypervisors"),
        ("webhooks", "0001_subscriptions_and_deliveries"),
    ]

    operations = [migrations.RunPython(_roles.create_roles, migrations.RunPython.noop)]
