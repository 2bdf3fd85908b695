"""Credentials, settings, emergency grants and OIDC identities moved from the
project package into their own apps: an installation upgraded across the move
keeps every row, and every grant of the moved permissions."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [
    ("pureboot", "0009_oidc_identity"),
    ("credentials", None),
    ("systemsettings", None),
    ("accounts", None),
]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state([t for t in targets if t[1]]).apps


@pytest.mark.django_db(transaction=True)
def test_rows_and_grants_survive_the_move():
    old = _migrate(BEFORE)
    group = old.get_model("auth", "Group").objects.create(name="ops-custom")
    permission = old.get_model("auth", "Permission")
    content_type = old.get_model("contenttypes", "ContentType")
    credential_type, _ = content_type.objects.get_or_create(
        app_label="pureboot", model="credential"
    )
    view, _ = permission.objects.get_or_create(
        content_type=credential_type, codename="view_credential", defaults={"name": "view"}
    )
    group.permissions.add(view)
    old.get_model("pureboot", "Credential").objects.create(
        name="bmc-rack1", kind="bmc", username="root", created_by="x", updated_by="x"
    )
    old.get_model("pureboot", "SystemSetting").objects.create(
        key="approval_hours", value=6, updated_by="x"
    )

    latest = _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    credential = latest.get_model("credentials", "Credential").objects.get()
    assert (credential.name, credential.username) == ("bmc-rack1", "root")
    assert latest.get_model("systemsettings", "SystemSetting").objects.get().value == 6
    kept = latest.get_model("auth", "Group").objects.get(name="ops-custom").permissions.get()
    assert (kept.content_type.app_label, kept.codename) == ("credentials", "view_credential")
    assert (
        not latest.get_model("contenttypes", "ContentType")
        .objects.filter(app_label="pureboot", model__in=("credential", "systemsetting"))
        .exists()
    )
