"""The installer checkers can say no, and say which tool is missing.

The broken-config tests prove each real checker (pykickstart, subiquity's
schema with jsonschema, cloud-init, debconf-set-selections, bash and
shellcheck) rejects what it should.
"""

from __future__ import annotations

import re
import shutil
import sys

import pytest

from workflows import installer_checks
from workflows.installer_checks import ToolMissing, check_installer

from .installer_helpers import render_sample

# --- the checkers can fail -------------------------------------------------------------------


def _replace(files: dict[str, str], name: str, old: str, new: str) -> dict[str, str]:
    assert old in files[name], old
    return {**files, name: files[name].replace(old, new, 1)}


def test_kickstart_checker_catches_errors():
    files = render_sample("kickstart")
    bad = _replace(files, "ks.cfg", "skipx\n", "skipx\nfrobnicate --now\ninstall\n")
    problems = check_installer("kickstart", bad)
    assert any("Unknown command: frobnicate" in p for p in problems)
    assert any("install has been removed" in p for p in problems)

    deprecated = _replace(
        files, "ks.cfg", "timezone UTC --utc", "timezone UTC --utc --ntpservers=a"
    )
    assert any("deprecated" in p for p in check_installer("kickstart", deprecated))

    unclosed = {"ks.cfg": files["ks.cfg"].rsplit("%end", 1)[0]}
    assert any("does not end with %end" in p for p in check_installer("kickstart", unclosed))

    no_version = _replace(files, "ks.cfg", "#version=RHEL9\n", "")
    assert check_installer("kickstart", no_version) == [
        "ks.cfg: no '#version=' line names the kickstart syntax to check against"
    ]
    unknown_release = _replace(files, "ks.cfg", "#version=RHEL9", "#version=F999")
    assert "no kickstart syntax 'F999'" in check_installer("kickstart", unknown_release)[0]


def test_autoinstall_checker_catches_errors():
    files = render_sample("ubuntu_autoinstall")
    problems = check_installer(
        "ubuntu_autoinstall", _replace(files, "user-data", "version: 1", "version: 2")
    )
    assert any("autoinstall.version: 2 is greater than the maximum of 1" in p for p in problems)

    typo = _replace(files, "user-data", "  late-commands:", "  late-command:")
    assert "user-data: autoinstall.late-command: not an autoinstall key" in check_installer(
        "ubuntu_autoinstall", typo
    )

    no_password = _replace(files, "user-data", "    password: ", "    passwort: ")
    problems = check_installer("ubuntu_autoinstall", no_password)
    assert any("'password' is a required property" in p for p in problems)

    broken_yaml = {**files, "meta-data": "instance-id: [unclosed\n"}
    assert any(
        "meta-data: not valid YAML" in p for p in check_installer("ubuntu_autoinstall", broken_yaml)
    )

    nested = _replace(files, "user-data", "  user-data:\n", "  user-data:\n    packages: 5\n")
    problems = check_installer("ubuntu_autoinstall", nested)
    assert any("autoinstall.user-data" in p and "not of type 'array'" in p for p in problems)


def test_cloud_init_checker_catches_errors():
    files = render_sample("cloud_init")
    wrong_type = _replace(files, "user-data", 'packages:\n  - "openssh-server"\n', "packages: 5\n")
    problems = check_installer("cloud_init", wrong_type)
    assert any("user-data: cloud-init schema" in p and "not of type 'array'" in p for p in problems)

    no_header = _replace(files, "user-data", "#cloud-config\n", "")
    problems = check_installer("cloud_init", no_header)
    assert any('needs to begin with "#cloud-config"' in p for p in problems)

    deprecated = _replace(
        files, "user-data", "timezone: ", "chpasswd:\n  list: |\n    root:x\ntimezone: "
    )
    assert any("deprecations" in p for p in check_installer("cloud_init", deprecated))

    assert check_installer("cloud_init", {**files, "meta-data": "local-hostname: x\n"}) == [
        "meta-data: must be a mapping with an instance-id"
    ]


def test_preseed_checker_catches_errors():
    files = render_sample("debian_preseed")
    bad = _replace(
        files, "preseed.cfg", "d-i clock-setup/utc boolean true\n", "d-i clock-setup/utc\n"
    )
    [problem] = check_installer("debian_preseed", bad)
    assert re.fullmatch(
        r"preseed.cfg: error: parse error on line \d+: 'd-i clock-setup/utc'", problem
    )
    unknown_type = _replace(files, "preseed.cfg", "boolean true\n", "bool true\n")
    assert any("Unknown type bool" in p for p in check_installer("debian_preseed", unknown_type))


@pytest.mark.parametrize(
    ("task_type", "name"), [("arch_bootstrap", "bootstrap.sh"), ("raspberrypi_os", "firstrun.sh")]
)
def test_shell_checkers_catch_errors(task_type, name):
    files = render_sample(task_type)
    syntax = _replace(
        files, name, "\nexit 0\n" if name == "firstrun.sh" else "\nsync\n", "\nif then fi\n"
    )
    problems = check_installer(task_type, syntax)
    assert problems and all(p.startswith(f"{name}: bash -n: ") for p in problems)
    # Valid bash, but shellcheck warns: rm -rf "$DIR/"* removes /* when DIR is empty.
    risky = _replace(files, name, "\n# --- ", '\nrm -rf "$UNSET_DIR/"*\n# --- ')
    problems = check_installer(task_type, risky)
    assert [p for p in problems if "shellcheck" in p and "SC2115" in p]


def test_shellcheck_is_optional_bash_is_not(monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(
        installer_checks.shutil,
        "which",
        lambda cmd: None if cmd == "shellcheck" else real_which(cmd),
    )
    files = render_sample("arch_bootstrap")
    risky = _replace(files, "bootstrap.sh", "\nsync\n", '\nrm -rf "$UNSET_DIR/"*\nsync\n')
    assert check_installer("arch_bootstrap", risky) == []  # bash -n alone accepts it
    assert check_installer("arch_bootstrap", _replace(files, "bootstrap.sh", "\nsync\n", "\nfi\n"))


@pytest.mark.parametrize("task_type", ["ubuntu_autoinstall", "cloud_init"])
def test_duplicate_yaml_keys_are_problems(task_type):
    files = render_sample(task_type)
    doubled = {**files, "user-data": files["user-data"] + 'timezone: "Europe/Paris"\n'}
    if task_type == "ubuntu_autoinstall":
        doubled["user-data"] = files["user-data"] + '  timezone: "Europe/Paris"\n'
    problems = check_installer(task_type, doubled)
    assert any("found duplicate key 'timezone'" in p for p in problems)


# --- tools missing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task_type", "tool"),
    [
        ("cloud_init", "cloud-init"),
        ("ubuntu_autoinstall", "cloud-init"),
        ("debian_preseed", "debconf-set-selections"),
        ("arch_bootstrap", "bash"),
        ("raspberrypi_os", "bash"),
    ],
)
def test_missing_command_raises_tool_missing(monkeypatch, task_type, tool):
    files = render_sample(task_type)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ToolMissing) as caught:
        check_installer(task_type, files)
    assert caught.value.tool == tool
    assert tool in str(caught.value) and "install" in str(caught.value)


def test_missing_pykickstart_raises_tool_missing(monkeypatch):
    files = render_sample("kickstart")
    monkeypatch.setitem(sys.modules, "pykickstart.parser", None)
    with pytest.raises(ToolMissing, match="pykickstart is not available: install the PyPI package"):
        check_installer("kickstart", files)


def test_missing_autoinstall_schema_raises_tool_missing(monkeypatch, tmp_path):
    files = render_sample("ubuntu_autoinstall")
    monkeypatch.setattr(installer_checks, "AUTOINSTALL_SCHEMA", tmp_path / "absent.json")
    with pytest.raises(ToolMissing, match="autoinstall schema is not available"):
        check_installer("ubuntu_autoinstall", files)
