"""Create the Admin, Operator, Auditor and User roles (see pureboot/roles.py)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


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


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("nodes", "0001_initial"),
        ("workflows", "0001_initial"),
        ("audit", "0001_auditevent"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
