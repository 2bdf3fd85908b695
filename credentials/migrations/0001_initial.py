"""Credential moves here from the pureboot app (same table)."""

import django.core.validators
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
                    name='Credential',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(help_text='Unique name other records refer to, e.g. ovirt-prod-api.', max_length=100, unique=True, validators=[django.core.validators.RegexValidator('^[A-Za-z0-9][A-Za-z0-9._-]*$', 'Letters, digits, dots, dashes and underscores; starting with a letter or digit.')])),
                        ('kind', models.CharField(choices=[('hypervisor', 'Hypervisor login'), ('domain_join', 'Domain-join account'), ('bmc', 'BMC login')], max_length=20)),
                        ('username', models.CharField(max_length=255)),
                        ('scope', models.CharField(blank=True, help_text='Where it applies: a hypervisor URL, an AD domain, a BMC subnet.', max_length=255)),
                        ('description', models.TextField(blank=True, max_length=2000)),
                        ('password_ciphertext', models.TextField(blank=True, editable=False)),
                        ('private_key_ciphertext', models.TextField(blank=True, editable=False, help_text='Encrypted private key or API token.')),
                        ('secret_changed_at', models.DateTimeField(blank=True, editable=False, null=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('created_by', models.CharField(editable=False, max_length=150)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('updated_by', models.CharField(editable=False, max_length=150)),
                    ],
                    options={
                        'db_table': 'pureboot_credential',
                        'ordering': ['name'],
                        'permissions': [('view_credential_names', 'Can list credential names and kinds')],
                        'constraints': [models.CheckConstraint(condition=models.Q(('kind__in', ['hypervisor', 'domain_join', 'bmc'])), name='credential_kind_valid')],
                    },
                ),
            ],
        ),
    ]
