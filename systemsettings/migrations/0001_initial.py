"""SystemSetting moves here from the pureboot app (same table)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('pureboot', '0009_oidc_identity'),
    ]

    # The tables exist already (made by the pureboot app's migrations, whose
    # records these were); this migration only takes them over in Django's state.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='SystemSetting',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('key', models.CharField(max_length=64, unique=True)),
                        ('value', models.JSONField()),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('updated_by', models.CharField(editable=False, max_length=150)),
                    ],
                    options={
                        'db_table': 'pureboot_systemsetting',
                        'ordering': ['key'],
                    },
                ),
            ],
        ),
    ]
