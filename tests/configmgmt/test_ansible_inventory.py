"""The Ansible inventory: the API's JSON and the real ansible-inventory reading it."""

import importlib.util
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from configmgmt.inventory import ansible_inventory, group_name
from nodes.models import Tag
from tests.factories import make_node, make_user

from .conftest import REPO, access_token, tool

URL = "/api/v1/inventory/ansible"
SCRIPT = REPO / "deploy" / "ansible" / "pureboot_inventory.py"


def plain(value):
    """``value`` without Ansible's unsafe markers."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def strings(value):
    """Every string leaf of ``value`` that is not marked unsafe."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return []
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def test_groups_and_hostvars(api, admin_user, fleet):
    answer = api(admin_user).get(URL)
    assert answer.status_code == 200
    data = answer.json()
    assert data["site_site_a"]["hosts"] == ["db1.example.net", "web1.example.net"]
    assert data["state_installed"]["hosts"] == ["b-secret.example.net", "web1.example.net"]
    # A tag's hyphens are not allowed in an Ansible group name.
    assert data["tag_front_end_web"]["hosts"] == ["web1.example.net"]
    assert data["workflow_ubuntu_web"]["hosts"] == ["web1.example.net"]
    web = plain(data["_meta"]["hostvars"]["web1.example.net"])
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
    assert plain(listed["_meta"]["hostvars"]["web1.example.net"])["ansible_host"] == "192.0.2.10"
    assert "b-secret" not in done.stdout
    one = _run_inventory(live_server.url, access_token(operator), "--host", "web1.example.net")
    assert one.returncode == 0, one.stderr
    assert plain(json.loads(one.stdout))["pureboot_site"] == "site-a"


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


HOSTILE = "{{ lookup('pipe','touch %s') }}"


def test_every_hostvar_string_is_unsafe(api, admin_user, fleet):
    node = fleet["web"]
    node.model = HOSTILE % "/tmp/never"
    node.inventory["nics"] = [{"name": "{{ 7*7 }}", "driver": "{% raw %}"}]
    node.save()
    hostvars = api(admin_user).get(URL).json()["_meta"]["hostvars"]
    assert hostvars and all(strings(v) == [] for v in hostvars.values())
    web = hostvars["web1.example.net"]
    assert web["pureboot_model"] == {"__ansible_unsafe": HOSTILE % "/tmp/never"}
    assert web["pureboot_hardware"]["nics"][0]["name"] == {"__ansible_unsafe": "{{ 7*7 }}"}
    assert web["pureboot_macs"] == [{"__ansible_unsafe": "52:54:00:aa:00:01"}]
    assert web["pureboot_id"] == node.pk  # numbers stay numbers


def test_inventory_script_marks_strings_unsafe(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("pureboot_inventory", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    answer = {
        "all": {"children": ["ungrouped"]},
        "_meta": {"hostvars": {"h": {"m": "{{ 1 }}", "d": [{"x": "y"}], "n": 3}}},
    }
    monkeypatch.setattr(script, "fetch_inventory", lambda: json.loads(json.dumps(answer)))
    script.main(["--list"])
    hostvars = json.loads(capsys.readouterr().out)["_meta"]["hostvars"]
    assert hostvars == {
        "h": {
            "m": {"__ansible_unsafe": "{{ 1 }}"},
            "d": [{"x": {"__ansible_unsafe": "y"}}],
            "n": 3,
        }
    }
    script.main(["--host", "h"])
    assert json.loads(capsys.readouterr().out)["m"] == {"__ansible_unsafe": "{{ 1 }}"}


@pytest.mark.django_db(transaction=True)
def test_real_ansible_playbook_does_not_template_node_facts(live_server, site_a, tmp_path):
    # A short path: the payload must fit the model column (100 characters on PostgreSQL).
    mark = Path(tempfile.mkdtemp(prefix="pb")) / "t"
    payload = HOSTILE % mark
    assert len(payload) <= 100
    make_node(
        "installed",
        site=site_a,
        hostname="web1.example.net",
        vendor=payload,
        model=payload,
        inventory={"disks": [{"path": "/dev/vda", "model": payload}], "cpus": {"model": payload}},
    )
    admin = make_user("Admin", username="alice-admin")
    playbook = tmp_path / "show.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  connection: local\n  tasks:\n"
        "    - ansible.builtin.debug:\n"
        '        msg: "MODEL={{ pureboot_model }} DISK={{ pureboot_hardware.disks[0].model }}"\n'
    )
    env = {
        **os.environ,
        "PUREBOOT_URL": live_server.url,
        "PUREBOOT_TOKEN": access_token(admin),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path),
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
    }
    done = subprocess.run(
        [tool("ansible-playbook"), "-i", str(SCRIPT), str(playbook)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not mark.exists()
    assert f"MODEL={payload} DISK={payload}" in done.stdout


def test_unnamed_node_never_takes_a_named_nodes_name(admin_user, site_a, db):
    unnamed = make_node("discovered", site=site_a)
    make_node("installed", site=site_a, hostname=f"node-{unnamed.pk}")
    make_node("installed", site=site_a, hostname=f"node{unnamed.pk}")
    hostvars = ansible_inventory(admin_user)["_meta"]["hostvars"]
    assert f"node-{unnamed.pk}" in hostvars and f"node{unnamed.pk}" in hostvars
    assert plain(hostvars[f"node-{unnamed.pk}"])["pureboot_hostname"] == f"node-{unnamed.pk}"
    assert plain(hostvars[f"node_{unnamed.pk}"])["pureboot_id"] == unnamed.pk
    assert len(hostvars) == 3
