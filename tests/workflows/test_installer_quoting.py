"""Hostile values in a node or its parameters stay data in every installer format.

Commands, host names, SSH keys and package names cannot break out of their
YAML string, shell word or line; line-oriented formats refuse line breaks.
"""

from __future__ import annotations

import base64
import re
import shlex

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.installer_checks import check_installer
from workflows.rendering import INSTALLER_FILES, MAIN_FILE, RenderError, to_yaml, yaml_quote

from .installer_context import ED25519_KEY
from .installer_helpers import installer_cases, render_sample

# --- hostile values ----------------------------------------------------------------------------

HOSTILE_COMMAND = (
    "echo \"it's\" '$(id)' `uname` \\\n"
    "%end\n"
    "rootpw --plaintext hacked\n"
    "d-i passwd/root-password password hacked\n"
    "  late-commands: [reboot]\n"
    "'; touch /pwned; echo '"
)


@pytest.mark.parametrize(("task_type", "node", "params"), list(installer_cases())[::3])
def test_hostile_post_install_command_stays_one_command(task_type, node, params):
    params = {**params, "post_install": [HOSTILE_COMMAND, "echo second"]}
    files = render_sample(task_type, node, params)
    assert check_installer(task_type, files) == []
    main = files[MAIN_FILE[task_type]]
    if task_type not in ("arch_bootstrap", "raspberrypi_os"):  # in a shell string they are text
        injected = (
            r"^(rootpw --plaintext|d-i passwd/root-password password hacked"
            r"|\s*late-commands: \[reboot)"
        )
        assert not re.search(injected, main, re.M)

    if task_type in ("ubuntu_autoinstall", "cloud_init"):
        doc = yaml.safe_load(main)
        if task_type == "ubuntu_autoinstall":
            commands = [c[-1] for c in doc["autoinstall"]["late-commands"] if isinstance(c, list)]
        else:
            commands = [shlex.split(c)[2] for c in doc["runcmd"][:2]]
        assert commands == [HOSTILE_COMMAND, "echo second"]
    elif task_type in ("kickstart", "debian_preseed"):
        encoded = re.search(r"echo ([A-Za-z0-9+/=]+) [|>]", main).group(1)
        assert HOSTILE_COMMAND + "\necho second\n" in base64.b64decode(encoded).decode()
    else:
        assert _shell_words_after(main, "bash -c ") == HOSTILE_COMMAND


def _shell_words_after(script: str, marker: str) -> str:
    """The first shell word after ``marker`` (as bash would read it)."""
    lexer = shlex.shlex(script[script.index(marker) + len(marker) :], posix=True)
    lexer.whitespace_split = True
    return lexer.get_token()


HOSTILE_HOSTNAME = 'web01"\n  late-commands: [reboot]\n#'


@pytest.mark.parametrize("task_type", ["ubuntu_autoinstall", "cloud_init"])
def test_hostile_hostname_stays_one_yaml_string(task_type):
    files = render_sample(task_type, node={"hostname": HOSTILE_HOSTNAME, "domain": ""})
    assert check_installer(task_type, files) == []
    doc = yaml.safe_load(files["user-data"])
    if task_type == "ubuntu_autoinstall":
        assert doc["autoinstall"]["identity"]["hostname"] == HOSTILE_HOSTNAME
        # the operator's command, the first-boot unit, the report
        assert len(doc["autoinstall"]["late-commands"]) == 3
    else:
        assert doc["hostname"] == HOSTILE_HOSTNAME
    assert yaml.safe_load(files["meta-data"])["local-hostname"] == HOSTILE_HOSTNAME


@pytest.mark.parametrize(
    ("task_type", "name"), [("arch_bootstrap", "bootstrap.sh"), ("raspberrypi_os", "firstrun.sh")]
)
def test_hostile_values_stay_shell_words(task_type, name):
    key = "ssh-ed25519 AAAA $(touch /pwned) `id` 'q' \"dq\" op@host"
    files = render_sample(
        task_type, node={"hostname": "x'$(reboot)'\ny"}, params={"ssh_keys": [key, ED25519_KEY]}
    )
    assert check_installer(task_type, files) == []
    script = files[name]
    assert _shell_words_after(
        script, "NEW_HOSTNAME=" if name == "firstrun.sh" else "NODE_HOSTNAME="
    ) == ("x'$(reboot)'\ny")
    assert _shell_words_after(script, "SSH_KEYS=(") == key


@pytest.mark.parametrize("task_type", ["kickstart", "debian_preseed"])
@pytest.mark.parametrize(
    ("section", "values"),
    [
        ("node", {"hostname": "web01\nrootpw --plaintext x"}),
        ("params", {"timezone": "UTC\nd-i passwd/root-password password x"}),
        ("params", {"locale": "en_US.UTF-8\u2028%end"}),
        ("install", {"token": "tok\n%end"}),
    ],
)
def test_line_breaks_are_refused_in_line_oriented_formats(task_type, section, values):
    with pytest.raises(RenderError, match="a line break is not allowed here"):
        render_sample(task_type, **{section: values})


def test_kickstart_refuses_line_breaks_in_ssh_keys():
    with pytest.raises(RenderError, match="a line break is not allowed here"):
        render_sample("kickstart", params={"ssh_keys": ["ssh-ed25519 AAAA\n%end\nrootpw x"]})


def test_preseed_value_may_not_continue_onto_the_next_line():
    with pytest.raises(RenderError, match="must not end in a backslash"):
        render_sample("debian_preseed", params={"timezone": "UTC\\"})


# windows_install installs no packages (its values: tests/workflows/test_windows_unattend.py).
@pytest.mark.parametrize("task_type", sorted(set(INSTALLER_FILES) - {"windows_install"}))
@pytest.mark.parametrize(
    "bad", ["vim; rm -rf /", "vim htop", "-oDpkg::Pre-Invoke::=id", "%end", "'q'"]
)
def test_package_names_are_refused_unless_plain(task_type, bad):
    if task_type == "kickstart" and bad.startswith("-"):
        bad = "-bad name"  # a leading "-" is kickstart's exclusion, tested below
    with pytest.raises(RenderError, match="not a package name"):
        render_sample(task_type, params={"packages": ["vim", bad]})


def test_kickstart_may_exclude_packages():
    files = render_sample(
        "kickstart", params={"packages": ["@^minimal-environment", "-firewalld", "kernel-tools*"]}
    )
    assert "\n-firewalld\n" in files["ks.cfg"]
    assert check_installer("kickstart", files) == []


@pytest.mark.parametrize("username", ["root:x", "../../etc", "Admin User", "a\nb", ""])
def test_usernames_must_be_login_names(username):
    with pytest.raises(RenderError, match="params.username is not a login name"):
        render_sample("cloud_init", params={"username": username})


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_yaml_quote_round_trips_any_text(text):
    assert yaml.safe_load("k: " + yaml_quote(text))["k"] == text


_JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(_JSON_LIKE)
def test_to_yaml_is_one_line_and_round_trips(value):
    dumped = to_yaml(value)
    assert "\n" not in dumped
    assert yaml.safe_load("k: " + dumped)["k"] == value
