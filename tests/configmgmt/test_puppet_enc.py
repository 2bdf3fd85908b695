"""The Puppet external node classifier: the API and the real ``puppet node find`` using it."""

import json
import os
import subprocess

import pytest

from tests.factories import make_node, make_user

from .conftest import REPO, access_token, tool

ENC = REPO / "deploy" / "puppet" / "pureboot-enc"
CLASSIFIED = {
    "puppet": {
        "classes": ["ntp", "role::web"],
        "parameters": {"datacenter": "fra1"},
        "environment": "staging",
    },
    "secret_note": "hunter2",
}


def url(certname: str) -> str:
    return f"/api/v1/inventory/puppet/{certname}"


def test_classification(api, operator_a, site_a, db):
    make_node("installed", site=site_a, hostname="web1.example.net", metadata=CLASSIFIED)
    answer = api(operator_a).get(url("WEB1.example.net"))
    assert answer.status_code == 200
    assert answer.json() == {
        "classes": ["ntp", "role::web"],
        "parameters": {
            "datacenter": "fra1",
            "pureboot_site": "site-a",
            "pureboot_state": "installed",
            "pureboot_tags": [],
            "pureboot_workflow": "",
        },
        "environment": "staging",
    }
    assert "hunter2" not in answer.content.decode()


def test_classes_with_parameters_and_defaults(api, operator_a, site_a, db):
    classes = {"puppet": {"classes": {"ntp": {"servers": ["a", "b"]}, "motd": None}}}
    make_node("installed", site=site_a, hostname="db1.example.net", metadata=classes)
    data = api(operator_a).get(url("db1.example.net")).json()
    assert data["classes"] == {"ntp": {"servers": ["a", "b"]}, "motd": {}}
    assert data["environment"] == "production"


def test_another_sites_node_is_404(api, operator_a, site_b, db):
    make_node("installed", site=site_b, hostname="b-secret.example.net", metadata=CLASSIFIED)
    answer = api(operator_a).get(url("b-secret.example.net"))
    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "certname", ["-bad.example", "a..b", "x" * 300, "semi;colon", "%00nul", "under_score"]
)
def test_malformed_certname_is_400(api, operator_a, db, certname):
    answer = api(operator_a).get(url(certname))
    assert answer.status_code in (400, 404)  # an over-long path matches no route at all
    if answer.status_code == 400:
        assert answer.json()["code"] == "invalid_certname"


def test_malformed_stored_classification_is_409(api, operator_a, site_a, db):
    bad = {"puppet": {"classes": ["Not A Class; exec"]}}
    make_node("installed", site=site_a, hostname="web3.example.net", metadata=bad)
    answer = api(operator_a).get(url("web3.example.net"))
    assert answer.status_code == 409
    assert "is not a Puppet class name" in answer.json()["detail"]


def test_no_token_is_401(api, db):
    assert api().get(url("web1.example.net")).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_real_puppet_classifies_through_the_enc(live_server, site_a, site_b, tmp_path):
    # A character outside the Basic Multilingual Plane: printed as UTF-8, not a surrogate pair.
    motto = {"parameters": {"datacenter": "fra1", "motto": "ship it \U0001f680"}}
    classified = {**CLASSIFIED, "puppet": {**CLASSIFIED["puppet"], **motto}}
    make_node("installed", site=site_a, hostname="web1.example.net", metadata=classified)
    make_node("installed", site=site_b, hostname="b-secret.example.net", metadata=CLASSIFIED)
    operator = make_user("Operator", sites=[site_a], username="oscar-op")
    # Puppet checks that the environment the ENC names exists.
    (tmp_path / "code" / "environments" / "staging").mkdir(parents=True)
    # As on a Puppet server: the ENC's settings file, signing in with a password.
    config = tmp_path / "pureboot-enc.conf"
    config.write_text(
        f"# PureBoot ENC\nPUREBOOT_URL={live_server.url}\nPUREBOOT_USERNAME=oscar-op\n"
        "PUREBOOT_PASSWORD=test-pass-1234\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUREBOOT_")}
    env["PUREBOOT_ENC_CONFIG"] = str(config)

    def find(certname: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                tool("puppet"),
                "node",
                "find",
                certname,
                "--node_terminus",
                "exec",
                "--external_nodes",
                str(ENC),
                "--render-as",
                "json",
                *(f"--{d}dir={tmp_path / d}" for d in ("conf", "var", "code")),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = find("web1.example.net")
    assert done.returncode == 0, done.stdout + done.stderr
    node = json.loads(done.stdout[done.stdout.index("{") :])
    assert node["name"] == "web1.example.net"
    assert node["classes"] == ["ntp", "role::web"]
    assert node["environment"] == "staging"
    assert node["parameters"]["datacenter"] == "fra1"
    assert node["parameters"]["pureboot_site"] == "site-a"
    assert node["parameters"]["motto"] == "ship it \U0001f680"

    # Another site's node: the ENC fails, so Puppet does not classify it.
    other = find("b-secret.example.net")
    assert other.returncode != 0
    assert "pureboot-enc b-secret.example.net' returned 1" in other.stderr
    assert "role::web" not in other.stdout
    direct = subprocess.run(
        [tool("python3"), str(ENC), "b-secret.example.net"], env=env, capture_output=True, text=True
    )
    assert direct.returncode == 1
    assert "answered HTTP 404: No node of yours is named b-secret.example.net" in direct.stderr
    # A token instead of the password works the same.
    env["PUREBOOT_TOKEN"] = access_token(operator)
    config.write_text(f"PUREBOOT_URL={live_server.url}\n")
    assert find("web1.example.net").returncode == 0
