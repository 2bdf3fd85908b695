"""The PUREBOOT_SAML_* variables, read by the real settings module in a fresh process."""

from __future__ import annotations

import pytest

from tests.signin.saml_idp import make_keypair
from tests.signin.test_settings_env import load, ok

SAML_BACKEND = "accounts.saml.PureBootSAMLBackend"


@pytest.fixture
def saml_env(tmp_path):
    key, cert = make_keypair(tmp_path, "sp")
    metadata = tmp_path / "idp-metadata.xml"
    metadata.write_text("<EntityDescriptor/>\n")  # read at the first sign-in, not at start-up
    return {
        "PUREBOOT_SAML_IDP_METADATA_FILE": str(metadata),
        "PUREBOOT_SAML_SP_ENTITY_ID": "https://pureboot.example.org/saml/metadata/",
        "PUREBOOT_SAML_SP_BASE_URL": "https://pureboot.example.org",
        "PUREBOOT_SAML_SP_KEY_FILE": str(key),
        "PUREBOOT_SAML_SP_CERT_FILE": str(cert),
        "PUREBOOT_SAML_ROLE_GROUPS": '{"Operator": ["ops"]}',
    }


def test_without_saml_variables_there_is_no_saml_backend(tmp_path):
    assert SAML_BACKEND not in ok(load(tmp_path, {}))["backends"]


def test_saml_variables_turn_saml_sign_in_on(tmp_path, saml_env):
    out = ok(load(tmp_path, saml_env))
    assert SAML_BACKEND in out["backends"]
    assert out["backends"][-2:] == [
        "guardian.backends.ObjectPermissionBackend",
        "accounts.emergency.EmergencyAccessBackend",
    ]


def test_a_metadata_url_instead_of_a_file_is_accepted(tmp_path, saml_env):
    saml_env.pop("PUREBOOT_SAML_IDP_METADATA_FILE")
    saml_env["PUREBOOT_SAML_IDP_METADATA_URL"] = "https://idp.example.org/metadata"
    assert SAML_BACKEND in ok(load(tmp_path, saml_env))["backends"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"PUREBOOT_SAML_IDP_METADATA_URL": "https://idp.example.org/m"},
            "set one of PUREBOOT_SAML_IDP_METADATA_FILE and PUREBOOT_SAML_IDP_METADATA_URL",
        ),
        ({"PUREBOOT_SAML_IDP_METADATA_FILE": "/nonexistent/idp.xml"}, "no such file"),
        ({"PUREBOOT_SAML_SP_ENTITY_ID": ""}, "needs PUREBOOT_SAML_SP_ENTITY_ID"),
        ({"PUREBOOT_SAML_SP_BASE_URL": "pureboot.example.org"}, "needs PUREBOOT_SAML_SP_BASE_URL"),
        ({"PUREBOOT_SAML_SP_KEY_FILE": ""}, "needs PUREBOOT_SAML_SP_KEY_FILE"),
        ({"PUREBOOT_SAML_SP_CERT_FILE": "/nonexistent.pem"}, "needs PUREBOOT_SAML_SP_CERT_FILE"),
        ({"PUREBOOT_SAML_CLOCK_SKEW_SECONDS": "3600"}, "must be at most 300"),
        ({"PUREBOOT_SAML_CLOCK_SKEW_SECONDS": "-1"}, "must be at least 0"),
        ({"PUREBOOT_SAML_ALLOW_UNSOLICITED": "maybe"}, "must be a boolean"),
        ({"PUREBOOT_SAML_ROLE_GROUPS": '{"Root": "x"}'}, "unknown role 'Root'"),
        ({"PUREBOOT_SAML_XMLSEC_BINARY": "/nonexistent/xmlsec1"}, "needs the xmlsec1 program"),
    ],
)
def test_bad_saml_variables_stop_start_up_naming_the_variable(tmp_path, saml_env, env, message):
    result = load(tmp_path, {**saml_env, **env})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_a_metadata_url_must_be_https(tmp_path, saml_env):
    saml_env.pop("PUREBOOT_SAML_IDP_METADATA_FILE")
    saml_env["PUREBOOT_SAML_IDP_METADATA_URL"] = "http://idp.example.org/metadata"
    result = load(tmp_path, saml_env)
    assert result.returncode != 0 and "must be an https:// URL" in result.stderr
