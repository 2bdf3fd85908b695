"""Credentials, system settings, emergency grants and OIDC identities now belong
to the credentials, systemsettings and accounts apps. The tables stay; the
content types (and so every permission and group grant) move with them."""

from django.db import migrations

MOVED = {
    "credential": "credentials",
    "systemsetting": "systemsettings",
    "emergencygrant": "accounts",
    "oidcidentity": "accounts",
}


def move_content_types(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    for model, app_label in MOVED.items():
        old = content_type.objects.filter(app_label="pureboot", model=model).first()
        if old is None:
            continue  # a fresh database: created under the new app later
        # A content type made for the new app meanwhile carries no grants of its own.
        content_type.objects.filter(app_label=app_label, model=model).delete()
        old.app_label = app_label
        old.save(update_fields=["app_label"])


def restore_content_types(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    for model, app_label in MOVED.items():
        content_type.objects.filter(app_label=app_label, model=model).update(app_label="pureboot")


class Migration(migrations.Migration):
    dependencies = [
        ("pureboot", "0009_oidc_identity"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("credentials", "0001_initial"),
        ("systemsettings", "0001_initial"),
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(move_content_types, restore_content_types),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(
                    name='Credential',
                ),
                migrations.RemoveField(
                    model_name='emergencygrant',
                    name='request',
                ),
                migrations.RemoveField(
                    model_name='emergencygrant',
                    name='user',
                ),
                migrations.RemoveField(
                    model_name='oidcidentity',
                    name='user',
                ),
                migrations.DeleteModel(
                    name='SystemSetting',
                ),
                migrations.DeleteModel(
                    name='EmergencyGrant',
                ),
                migrations.DeleteModel(
                    name='OIDCIdentity',
                ),
            ],
        ),
    ]
