"""EmergencyGrant and OIDCIdentity move here from the pureboot app (same tables)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('pureboot', '0009_oidc_identity'),
        ('approvals', '0002_any_target'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    # The tables exist already (made by the pureboot app's migrations, whose
    # records these were); this migration only takes them over in Django's state.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='EmergencyGrant',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('role', models.CharField(max_length=32)),
                        ('starts_at', models.DateTimeField()),
                        ('ends_at', models.DateTimeField()),
                        ('ended_at', models.DateTimeField(blank=True, null=True)),
                        ('ended_by', models.CharField(blank=True, max_length=150)),
                        ('request', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='grant', to='approvals.approvalrequest')),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='emergency_grants', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'pureboot_emergencygrant',
                        'ordering': ['-starts_at', '-pk'],
                        'permissions': [('request_emergency_access', 'Can ask for emergency access for oneself'), ('grant_emergency_access', 'Can request and approve emergency access for anyone')],
                    },
                ),
                migrations.CreateModel(
                    name='OIDCIdentity',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('issuer', models.CharField(max_length=255)),
                        ('subject', models.CharField(max_length=255)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='oidc_identities', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'verbose_name': 'OIDC identity',
                        'verbose_name_plural': 'OIDC identities',
                        'db_table': 'pureboot_oidcidentity',
                        'ordering': ['issuer', 'subject'],
                        'constraints': [models.UniqueConstraint(fields=('issuer', 'subject'), name='oidcidentity_unique_subject')],
                    },
                ),
            ],
        ),
    ]
