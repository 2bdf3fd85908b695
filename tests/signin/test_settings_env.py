"""The PUREBOOT_LDAP_* and PUREBOOT_OIDC_* variables, read by the real settings module.

Each case loads pureboot.settings in a fresh Python process with only the
given variables, as `make run` or gunicorn would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRINT = """
import json, sys
{block}
import django
django.setup()
from django.conf import settings as s
out = {{"backends": s.AUTHENTICATION_BACKENDS, "oidc": s.PUREBOOT_OIDC_ENABLED,
        "ldap_roles": {{k: list(v) for k, v in s.PUREBOOT_LDAP_ROLE_GROUPS.items()}}}}
if hasattr(s, "AUTH_LDAP_SERVER_URI"):
    import ldap
    out.update(
        uri=s.AUTH_LDAP_SERVER_URI,
        bind_dn=s.AUTH_LDAP_BIND_DN,
        user_filter=s.AUTH_LDAP_USER_SEARCH.filterstr,
        group_type=type(s.AUTH_LDAP_GROUP_TYPE).__name__,
        start_tls=s.AUTH_LDAP_START_TLS,
        require_group=s.AUTH_LDAP_REQUIRE_GROUP,
        ca_file=s.AUTH_LDAP_CONNECTION_OPTIONS.get(ldap.OPT_X_TLS_CACERTFILE),
    )
print(json.dumps(out))
"""

# Makes `import ldap` / `import django_auth_ldap` fail, as on a machine without the extra.
BLOCK_LDAP = """
class _NoLdap:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ldap", "django_auth_ldap"):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, _NoLdap())
"""


def load(tmp_path, env: dict[str, str], block: str = "") -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PUREBOOT_")}
    clean.update(
        PUREBOOT_VAR_DIR=str(tmp_path / "var"),
        DJANGO_SETTINGS_MODULE="pureboot.settings",
        PYTHONPATH=str(ROOT),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-c", PRINT.format(block=block)],
        env=clean,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result) -> dict:
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_without_directory_variables_only_local_accounts_sign_in(tmp_path):
    out = ok(load(tmp_path, {}, block=BLOCK_LDAP))  # and django-auth-ldap is not needed
    assert out["backends"] == [
        "axes.backends.AxesStandaloneBackend",
        "django.contrib.auth.backends.ModelBackend",
        "guardian.backends.ObjectPermissionBackend",
        "accounts.emergency.EmergencyAccessBackend",
    ]
    assert out["oidc"] is False


LDAP_ENV = {
    "PUREBOOT_LDAP_SERVER_URI": "ldap://ldap.example.org",
    "PUREBOOT_LDAP_BIND_DN": "cn=pureboot,ou=services,dc=example,dc=org",
    "PUREBOOT_LDAP_BIND_PASSWORD": "bind-secret-from-env",
    "PUREBOOT_LDAP_USER_SEARCH_BASE": "ou=people,dc=example,dc=org",
    "PUREBOOT_LDAP_GROUP_SEARCH_BASE": "ou=groups,dc=example,dc=org",
    "PUREBOOT_LDAP_ROLE_GROUPS": json.dumps(
        {"Admin": "CN=PureBoot-Admins,OU=Groups,DC=example,DC=org", "Auditor": ["cn=a", "cn=b"]}
    ),
}


def test_ldap_variables_configure_django_auth_ldap(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked until a connection is made\n")
    env = {
        **LDAP_ENV,
        "PUREBOOT_LDAP_USER_FILTER": "(sAMAccountName=%(user)s)",
        "PUREBOOT_LDAP_GROUP_TYPE": "activeDirectory",
        "PUREBOOT_LDAP_START_TLS": "yes",
        "PUREBOOT_LDAP_CA_FILE": str(ca),
        "PUREBOOT_LDAP_REQUIRE_GROUP": "cn=staff,ou=groups,dc=example,dc=org",
    }
    result = load(tmp_path, env)
    out = ok(result)
    assert out["backends"][1:3] == [
        "django.contrib.auth.backends.ModelBackend",
        "accounts.ldap_backend.PureBootLDAPBackend",
    ]
    assert out["backends"][0] == "axes.backends.AxesStandaloneBackend"
    assert out["uri"] == "ldap://ldap.example.org"
    assert out["user_filter"] == "(sAMAccountName=%(user)s)"
    assert out["group_type"] == "NestedActiveDirectoryGroupType"
    assert out["start_tls"] is True and out["ca_file"] == str(ca)
    assert out["require_group"] == "cn=staff,ou=groups,dc=example,dc=org"
    # DNs compare case-insensitively; a role may map to several groups.
    assert out["ldap_roles"] == {
        "Admin": ["cn=pureboot-admins,ou=groups,dc=example,dc=org"],
        "Auditor": ["cn=a", "cn=b"],
    }
    assert "bind-secret-from-env" not in result.stdout + result.stderr


def test_the_default_user_filter_is_uid_and_groups_are_group_of_names(tmp_path):
    out = ok(load(tmp_path, LDAP_ENV))
    assert out["user_filter"] == "(uid=%(user)s)"
    assert out["group_type"] == "GroupOfNamesType"
    assert out["start_tls"] is False and out["ca_file"] is None


def test_ldap_without_the_library_stops_with_a_clear_message(tmp_path):
    result = load(tmp_path, LDAP_ENV, block=BLOCK_LDAP)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "django-auth-ldap is not installed" in result.stderr
    assert "libldap-dev" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PUREBOOT_LDAP_USER_SEARCH_BASE": ""}, "PUREBOOT_LDAP_USER_SEARCH_BASE"),
        ({"PUREBOOT_LDAP_USER_FILTER": "(uid=bob)"}, "must contain %(user)s"),
        ({"PUREBOOT_LDAP_GROUP_TYPE": "nis"}, "PUREBOOT_LDAP_GROUP_TYPE must be one of"),
        ({"PUREBOOT_LDAP_ROLE_GROUPS": '{"Root": "cn=x"}'}, "unknown role 'Root'"),
        ({"PUREBOOT_LDAP_ROLE_GROUPS": "[1]"}, "a JSON object of role -> group(s)"),
        ({"PUREBOOT_LDAP_ROLE_GROUPS": "{"}, "not valid JSON"),
        ({"PUREBOOT_LDAP_CA_FILE": "/nonexistent/ca.pem"}, "no such file"),
        ({"PUREBOOT_LDAP_START_TLS": "maybe"}, "PUREBOOT_LDAP_START_TLS must be a boolean"),
    ],
)
def test_bad_ldap_variables_stop_start_up_naming_the_variable(tmp_path, env, message):
    result = load(tmp_path, {**LDAP_ENV, **env})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr
    assert "bind-secret-from-env" not in result.stderr


OIDC_ENV = {
    "PUREBOOT_OIDC_CLIENT_ID": "pureboot",
    "PUREBOOT_OIDC_CLIENT_SECRET": "oidc-secret-from-env",
    "PUREBOOT_OIDC_ISSUER": "https://sso.example.org/realms/ops/",
    "PUREBOOT_OIDC_ROLE_GROUPS": '{"Operator": ["ops"]}',
}


def test_oidc_variables_turn_single_sign_on_on(tmp_path):
    result = load(tmp_path, OIDC_ENV)
    out = ok(result)
    assert out["oidc"] is True
    assert "accounts.oidc.PureBootOIDCBackend" in out["backends"]
    assert out["backends"][-2:] == [
        "guardian.backends.ObjectPermissionBackend",
        "accounts.emergency.EmergencyAccessBackend",
    ]
    assert "oidc-secret-from-env" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PUREBOOT_OIDC_CLIENT_SECRET": ""}, "needs PUREBOOT_OIDC_CLIENT_SECRET"),
        ({"PUREBOOT_OIDC_ISSUER": ""}, "needs PUREBOOT_OIDC_ISSUER"),
        ({"PUREBOOT_OIDC_SCOPES": "email profile"}, "must include openid"),
        ({"PUREBOOT_OIDC_ROLE_GROUPS": '{"Admin": 3}'}, "must map to a group or a list"),
    ],
)
def test_bad_oidc_variables_stop_start_up_naming_the_variable(tmp_path, env, message):
    result = load(tmp_path, {**OIDC_ENV, **env})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr
