"""The configuration-management variables, read by the real settings module in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRINT = (
    "import json; from django.conf import settings as s; import django; django.setup(); "
    "print(json.dumps({k: str(getattr(s, k)) for k in dir(s) if k.startswith(("
    "'PUREBOOT_SALT', 'PUREBOOT_CHEF', 'PUREBOOT_ANSIBLE'))}))"
)


def load(tmp_path, **env) -> subprocess.CompletedProcess:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PUREBOOT_", "DATABASE"))}
    return subprocess.run(
        [sys.executable, "-c", PRINT],
        cwd=ROOT,
        env={
            **keep,
            "DJANGO_SETTINGS_MODULE": "pureboot.settings",
            "PUREBOOT_VAR_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_defaults_leave_salt_and_chef_off(tmp_path):
    done = load(tmp_path)
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)
    assert values["PUREBOOT_SALT_API_URL"] == "" and values["PUREBOOT_CHEF_SERVER_URL"] == ""
    assert values["PUREBOOT_SALT_API_EAUTH"] == "pam"
    assert values["PUREBOOT_ANSIBLE_PLAYBOOK_DIR"] == str(tmp_path / "ansible")


def test_configured(tmp_path):
    done = load(
        tmp_path,
        PUREBOOT_SALT_API_URL="https://salt.example:8000/",
        PUREBOOT_SALT_API_CREDENTIAL="salt-api",
        PUREBOOT_CHEF_SERVER_URL="https://chef.example",
        PUREBOOT_CHEF_ORG="acme",
        PUREBOOT_CHEF_CREDENTIAL="chef-pureboot",
    )
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)
    assert values["PUREBOOT_SALT_API_URL"] == "https://salt.example:8000"
    assert values["PUREBOOT_CHEF_ORG"] == "acme"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PUREBOOT_SALT_API_URL": "salt.example"}, "must be an http:// or https:// URL"),
        (
            {"PUREBOOT_SALT_API_URL": "https://salt.example"},
            "PUREBOOT_SALT_API_CREDENTIAL is needed",
        ),
        (
            {"PUREBOOT_SALT_API_URL": "https://s", "PUREBOOT_SALT_API_CREDENTIAL": "a b"},
            "must be a credential name",
        ),
        ({"PUREBOOT_SALT_API_EAUTH": "pam;rm"}, "must be a Salt eauth module name"),
        ({"PUREBOOT_CHEF_SERVER_URL": "https://chef.example"}, "PUREBOOT_CHEF_ORG must be"),
        (
            {"PUREBOOT_CHEF_SERVER_URL": "https://c", "PUREBOOT_CHEF_ORG": "acme"},
            "PUREBOOT_CHEF_CREDENTIAL is needed",
        ),
    ],
)
def test_malformed_is_improperly_configured(tmp_path, env, message):
    done = load(tmp_path, **env)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and message in done.stderr


def test_a_missing_ca_file_is_refused_at_start(tmp_path):
    done = load(tmp_path, PUREBOOT_CONFIGMGMT_CA_FILE=str(tmp_path / "missing.pem"))
    assert done.returncode != 0
    assert "PUREBOOT_CONFIGMGMT_CA_FILE names" in done.stderr
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert load(tmp_path, PUREBOOT_CONFIGMGMT_CA_FILE=str(tmp_path / "ca.pem")).returncode == 0
