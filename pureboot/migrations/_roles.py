"""Shared by the role migrations: create permissions now, then set the role groups."""

from django.contrib.auth.management import create_permissions


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations; create them now so
    # the roles can reference them on a fresh database.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    from accounts.roles import sync_roles

    sync_roles(
        apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"), skip_missing=True
    )
