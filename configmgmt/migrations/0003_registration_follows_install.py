"""Registrations remember their install and whether PureBoot made them; deleted nodes' stay."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("configmgmt", "0002_roles_config_management"),
        ("nodes", "0008_event_kind_hypervisor"),
    ]

    operations = [
        migrations.AlterField(
            model_name="registration",
            name="node",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="cm_registrations",
                to="nodes.node",
            ),
        ),
        migrations.AddField(
            model_name="registration",
            name="preexisting",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "Already accepted / created when PureBoot first looked: never deleted by it"
                ),
            ),
        ),
        migrations.AddField(
            model_name="registration",
            name="install_run",
            field=models.PositiveBigIntegerField(
                blank=True,
                null=True,
                help_text="The install (WorkflowRun id) it was registered after",
            ),
        ),
    ]
