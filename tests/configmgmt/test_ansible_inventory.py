"""The Ansible inventory: the API's JSON and the real ansible-inventory reading it."""

import json
import os
import subprocess

import pytest

from configmgmt.inventory import ansible_inventory, group_name
from nodes.models import Tag
from tests.factories import make_node, make_user

from .conftest import REPO, access_token, tool

URL = "/api/v1/inventory/ansible"
SCRIPT = REPO / "deploy" / "ansible" / "pureboot_inventory.py"


def test_groups_and_hostvars(api, admin_user, fleet):
    answer = api(admin_user).get(URL)
    assert answer.status_code == 200
    data = answer.json()
    assert data["site_site_a"]["hosts"] == ["db1.example.net", "web1.example.net"]
    assert data["state_installed"]["hosts"] == ["b-secret.example.net", "web1.example.net"]
    # A tag's hyphens are not allowed in an Ansible group name.
    assert data["tag_front_end_web"]["hosts"] == ["web1.example.net"]
    assert data["workflow_ubuntu_web"]["hosts"] == ["web1.example.net"]
    web = data["_meta"]["hostvars"]["web1.example.net"]
    assert web["ansible_host"] == "192.0.2.10"
    assert web["pureboot_addresses"] == ["192.0.2.10", "10.0.0.5"]
    assert web["pureboot_macs"] == ["52:54:00:aa:00:01"]
    assert web["pureboot_state"] == "installed"
    assert web["pureboot_site"] == "site-a"
    assert web["pureboot_hardware"]["memory_bytes"] == 8 * 1024**3
    assert web["pureboot_hardware"]["disks"][0]["path"] == "/dev/vda"
    # Free-form metadata (which may hold anything) is not in the inventory.
    assert "hunter2" not in answer.content.decode()


def test_operator_sees_only_own_site(api, operator_a, fleet):
    data = api(operator_a).get(URL).json()
    assert set(data["_meta"]["hostvars"]) == {"db1.example.net", "web1.example.net"}
    assert "site_site_b" not in data
    assert "b-secret" not in json.dumps(data)


def test_no_token_is_401(api, fleet):
    answer = api().get(URL)
    assert answer.status_code == 401
    assert answer.json()["code"] == "not_authenticated"


def test_user_without_view_permission_is_403(api, db, fleet):
    nobody = make_user(None, username="nobody")
    answer = api(nobody).get(URL)
    assert answer.status_code == 403


def test_group_names_are_sanitised():
    assert group_name("tag", "rack-1.row/2 x") == "tag_rack_1_row_2_x"
    assert group_name("workflow", "ubuntu-24.04") == "workflow_ubuntu_24_04"


def _run_inventory(url: str, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PUREBOOT_URL": url, "PUREBOOT_TOKEN": token, "ANSIBLE_NOCOLOR": "1"}
    env["ANSIBLE_LOCAL_TEMP"] = env["ANSIBLE_REMOTE_TEMP"] = "/tmp"
    return subprocess.run(
        [tool("ansible-inventory"), "-i", str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db(transaction=True)
def test_real_ansible_inventory_lists_the_fleet(live_server, site_a, site_b):
    web = {"addresses": ["192.0.2.10"]}
    make_node("installed", site=site_a, hostname="web1.example.net", metadata=web)
    make_node("installed", site=site_b, hostname="b-secret.example.net")
    operator = make_user("Operator", sites=[site_a], username="oscar-op")
    done = _run_inventory(live_server.url, access_token(operator), "--list")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert listed["site_site_a"]["hosts"] == ["web1.example.net"]
    assert listed["state_installed"]["hosts"] == ["web1.example.net"]
    assert listed["_meta"]["hostvars"]["web1.example.net"]["ansible_host"] == "192.0.2.10"
    assert "b-secret" not in done.stdout
    one = _run_inventory(live_server.url, access_token(operator), "--host", "web1.example.net")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["pureboot_site"] == "site-a"


@pytest.mark.django_db(transaction=True)
def test_inventory_script_reports_http_failure(live_server):
    env = {**os.environ, "PUREBOOT_URL": live_server.url, "PUREBOOT_TOKEN": "not-a-token"}
    done = subprocess.run(
        [tool("python3"), str(SCRIPT), "--list"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "answered HTTP 401" in done.stderr


def test_query_count_does_not_grow_with_the_fleet(
    admin_user, site_a, django_assert_max_num_queries
):

    tag = Tag.objects.create(name="rack-1")
    for index in range(30):
        make_node("installed", site=site_a, hostname=f"n{index}.example.net").tags.add(tag)
    with django_assert_max_num_queries(8):
        data = ansible_inventory(admin_user)
    assert len(data["tag_rack_1"]["hosts"]) == 30
