"""Installer configurations render, for every task type and several nodes, into
files the distributions' own tools accept; and bad contexts are refused clearly.

The checkers are real (pykickstart, subiquity's schema with jsonschema,
cloud-init, debconf-set-selections, bash and shellcheck).
"""

from __future__ import annotations

import pytest
import yaml

from workflows.installer_checks import check_installer
from workflows.rendering import INSTALLER_FILES, RenderError, render_installer

from .installer_context import ED25519_KEY, ROOT_HASH, RSA_KEY, sample_context
from .installer_helpers import BARE_PARAMS, FULL_PARAMS, installer_cases, render_sample

# --- every installer type, several nodes, the real checker ---------------------------------------


@pytest.mark.parametrize(("task_type", "node", "params"), list(installer_cases()))
def test_rendered_configs_pass_the_distributions_checkers(task_type, node, params):
    files = render_sample(task_type, node, params)
    assert set(files) == set(INSTALLER_FILES[task_type])
    assert check_installer(task_type, files) == []


@pytest.mark.parametrize(
    ("distro", "version", "syntax"),
    [
        ("rocky", "9", "RHEL9"),
        ("rocky", "8.10", "RHEL8"),
        ("alma", "9.4", "RHEL9"),
        ("alma", "10", "RHEL10"),
        ("fedora", "40", "F40"),
        ("fedora", "42", "F42"),
    ],
)
def test_kickstart_is_checked_against_the_release_syntax(distro, version, syntax):
    files = render_sample(
        "kickstart",
        node={"firmware": "bios"},
        params={**FULL_PARAMS, "distro": distro, "version": version},
    )
    assert files["ks.cfg"].splitlines()[0] == f"#version={syntax}"
    assert check_installer("kickstart", files) == []


def test_debian_preseed_for_another_suite_and_https_mirror():
    files = render_sample(
        "debian_preseed", params={"suite": "trixie", "mirror": "https://deb.example.net/debian"}
    )
    text = files["preseed.cfg"]
    assert "d-i mirror/suite string trixie\n" in text
    assert "d-i mirror/https/hostname string deb.example.net\n" in text
    assert "d-i mirror/https/directory string /debian\n" in text
    assert check_installer("debian_preseed", files) == []


def test_cloud_init_user_data_extends_the_config():
    files = render_sample(
        "cloud_init",
        params={
            "user_data": {
                "write_files": [{"path": "/etc/motd", "content": "managed by PureBoot\n"}],
                "packages": ["jq"],
                "runcmd": [["touch", "/root/extra"]],
                "ntp": {"enabled": True, "servers": ["ntp.example"]},
            }
        },
    )
    assert check_installer("cloud_init", files) == []
    doc = yaml.safe_load(files["user-data"])
    assert doc["write_files"] == [{"path": "/etc/motd", "content": "managed by PureBoot\n"}]
    assert doc["ntp"] == {"enabled": True, "servers": ["ntp.example"]}
    assert doc["packages"] == ["openssh-server", "jq"]
    assert doc["runcmd"][1] == ["touch", "/root/extra"]
    assert "installed" in doc["runcmd"][-1]  # the report stays last


def test_cloud_init_user_data_may_not_override_what_pureboot_sets():
    with pytest.raises(RenderError, match=r"params\.user_data\.users is set by PureBoot"):
        render_sample("cloud_init", params={"user_data": {"users": [{"name": "evil"}]}})


def test_ubuntu_autoinstall_structure():
    files = render_sample("ubuntu_autoinstall", params=FULL_PARAMS)
    auto = yaml.safe_load(files["user-data"])["autoinstall"]
    assert auto["version"] == 1
    assert auto["identity"]["hostname"] == "web01"
    assert auto["ssh"] == {
        "install-server": True,
        "allow-pw": False,
        "authorized-keys": [ED25519_KEY, RSA_KEY],
    }
    assert auto["storage"]["layout"] == {"name": "direct", "match": {"path": "/dev/sda"}}
    assert auto["apt"]["primary"] == [
        {"arches": ["default"], "uri": "http://mirror.example/pub/distro/"}
    ]
    assert auto["user-data"]["chpasswd"]["users"][0]["password"] == ROOT_HASH
    assert auto["late-commands"][0] == [
        "curtin", "in-target", "--target=/target", "--", "sh", "-c", "echo one > /root/one"
    ]  # fmt: skip
    meta = yaml.safe_load(files["meta-data"])
    assert meta == {"instance-id": "pureboot-node-42", "local-hostname": "web01.lab.example.com"}
    bare = yaml.safe_load(render_sample("ubuntu_autoinstall", params=BARE_PARAMS)["user-data"])
    assert bare["autoinstall"]["identity"]["password"] == "!"
    assert bare["autoinstall"]["storage"]["layout"]["match"] == {"size": "largest"}


# --- render errors --------------------------------------------------------------------------


@pytest.mark.parametrize("task_type", sorted(INSTALLER_FILES))
@pytest.mark.parametrize(
    ("section", "key"), [("params", "timezone"), ("node", "hostname"), ("install", "token")]
)
def test_missing_context_key_names_it(task_type, section, key):
    context = sample_context(task_type)
    del context[section][key]
    with pytest.raises(RenderError, match=rf"^{task_type}: .*'{key}'"):
        render_installer(task_type, context)


def test_missing_section_names_it():
    context = sample_context("kickstart")
    del context["install"]
    with pytest.raises(RenderError, match="'install'"):
        render_installer("kickstart", context)


def test_unknown_task_type():
    with pytest.raises(RenderError, match="windows_unattend: not an installer task type"):
        render_installer("windows_unattend", sample_context())


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"distro": "centos"}, "params.distro must be one of fedora, rocky, alma"),
        ({"version": "stream"}, "params.version must start with a release number"),
    ],
)
def test_kickstart_refuses_unknown_releases(params, message):
    with pytest.raises(RenderError, match=message):
        render_sample("kickstart", params=params)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"arch": "armhf", "firmware": "uefi"}, "no armhf port"),
        ({"arch": "aarch64", "firmware": "bios"}, "UEFI firmware only"),
    ],
)
def test_arch_bootstrap_refuses_machines_it_cannot_install(node, message):
    with pytest.raises(RenderError, match=message):
        render_sample("arch_bootstrap", node=node)


def test_templates_render_in_a_sandbox():
    from jinja2.exceptions import SecurityError

    from workflows.rendering import environment

    template = environment().from_string("{{ node.__class__.__mro__ }}")
    with pytest.raises(SecurityError):
        template.render(sample_context())
