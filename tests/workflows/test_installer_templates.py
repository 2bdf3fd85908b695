"""Installer configurations: rendered from Jinja2, accepted by the distributions' own tools.

The checkers are real (pykickstart, subiquity's schema with jsonschema,
cloud-init, debconf-set-selections, bash and shellcheck); the broken-config
tests prove each of them can say no. The report calls are run for real with
curl/wget against an HTTP server on 127.0.0.1, and so is the first-boot unit's
setup (into a scratch folder) and its ExecStart program.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from workflows import installer_checks
from workflows.installer_checks import ToolMissing, check_installer
from workflows.rendering import (
    INSTALLER_FILES,
    MAIN_FILE,
    RenderError,
    environment,
    render_installer,
    to_yaml,
    yaml_quote,
)

from .installer_context import (
    ED25519_KEY,
    REPORT_URL,
    ROOT_HASH,
    RSA_KEY,
    TOKEN,
    sample_context,
)

# --- sample nodes ------------------------------------------------------------------------------

FULL_PARAMS = {
    "disk": "/dev/sda",
    "layout": "direct",
    "root_password_hash": ROOT_HASH,
    "ssh_keys": [ED25519_KEY, RSA_KEY],
    "packages": ["vim", "htop", "curl"],
    "post_install": ["echo one > /root/one", "systemctl enable --now chronyd || true"],
    "mirror": "http://mirror.example/pub/distro/",
    "timezone": "Europe/Berlin",
    "keyboard": "de",
    "locale": "de_DE.UTF-8",
}
BARE_PARAMS = {  # no keys, no packages, no commands, no password: the minimum
    "ssh_keys": [],
    "packages": [],
    "post_install": [],
    "password_hash": "",
}

# (id, node overrides, params overrides)
VARIANTS = {
    "uefi-x86_64-keys-fqdn": ({}, {}),
    "bios-x86_64-everything": ({"firmware": "bios", "domain": "dc1.example.org"}, FULL_PARAMS),
    "uefi-aarch64-bare-nodomain": ({"arch": "aarch64", "domain": ""}, BARE_PARAMS),
}
PI_VARIANTS = {
    "pi4-keys": ({}, {}),
    "pi4-everything": ({"domain": "kiosks.example.com"}, FULL_PARAMS),
    "pi-armhf-bare": ({"arch": "armhf"}, BARE_PARAMS),
}
GENERIC_TYPES = sorted(set(INSTALLER_FILES) - {"raspberrypi_os"})


def _cases() -> Iterator[Any]:
    for task_type in GENERIC_TYPES:
        for name, (node, params) in VARIANTS.items():
            yield pytest.param(task_type, node, params, id=f"{task_type}-{name}")
    for name, (node, params) in PI_VARIANTS.items():
        yield pytest.param("raspberrypi_os", node, params, id=f"raspberrypi_os-{name}")


def _render(task_type: str, node: dict | None = None, params: dict | None = None, **kw):
    return render_installer(task_type, sample_context(task_type, node=node, params=params, **kw))


# --- every installer type, several nodes, the real checker ---------------------------------------


@pytest.mark.parametrize(("task_type", "node", "params"), list(_cases()))
def test_rendered_configs_pass_the_distributions_checkers(task_type, node, params):
    files = _render(task_type, node, params)
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
    files = _render(
        "kickstart",
        node={"firmware": "bios"},
        params={**FULL_PARAMS, "distro": distro, "version": version},
    )
    assert files["ks.cfg"].splitlines()[0] == f"#version={syntax}"
    assert check_installer("kickstart", files) == []


def test_debian_preseed_for_another_suite_and_https_mirror():
    files = _render(
        "debian_preseed", params={"suite": "trixie", "mirror": "https://deb.example.net/debian"}
    )
    text = files["preseed.cfg"]
    assert "d-i mirror/suite string trixie\n" in text
    assert "d-i mirror/https/hostname string deb.example.net\n" in text
    assert "d-i mirror/https/directory string /debian\n" in text
    assert check_installer("debian_preseed", files) == []


def test_cloud_init_user_data_extends_the_config():
    files = _render(
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
        _render("cloud_init", params={"user_data": {"users": [{"name": "evil"}]}})


def test_ubuntu_autoinstall_structure():
    files = _render("ubuntu_autoinstall", params=FULL_PARAMS)
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
    bare = yaml.safe_load(_render("ubuntu_autoinstall", params=BARE_PARAMS)["user-data"])
    assert bare["autoinstall"]["identity"]["password"] == "!"
    assert bare["autoinstall"]["storage"]["layout"]["match"] == {"size": "largest"}


# --- the checkers can fail -------------------------------------------------------------------


def _replace(files: dict[str, str], name: str, old: str, new: str) -> dict[str, str]:
    assert old in files[name], old
    return {**files, name: files[name].replace(old, new, 1)}


def test_kickstart_checker_catches_errors():
    files = _render("kickstart")
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
    files = _render("ubuntu_autoinstall")
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
    files = _render("cloud_init")
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
    files = _render("debian_preseed")
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
    files = _render(task_type)
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
    files = _render("arch_bootstrap")
    risky = _replace(files, "bootstrap.sh", "\nsync\n", '\nrm -rf "$UNSET_DIR/"*\nsync\n')
    assert check_installer("arch_bootstrap", risky) == []  # bash -n alone accepts it
    assert check_installer("arch_bootstrap", _replace(files, "bootstrap.sh", "\nsync\n", "\nfi\n"))


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
    files = _render(task_type)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ToolMissing) as caught:
        check_installer(task_type, files)
    assert caught.value.tool == tool
    assert tool in str(caught.value) and "install" in str(caught.value)


def test_missing_pykickstart_raises_tool_missing(monkeypatch):
    files = _render("kickstart")
    monkeypatch.setitem(sys.modules, "pykickstart.parser", None)
    with pytest.raises(ToolMissing, match="pykickstart is not available: install the PyPI package"):
        check_installer("kickstart", files)


def test_missing_autoinstall_schema_raises_tool_missing(monkeypatch, tmp_path):
    files = _render("ubuntu_autoinstall")
    monkeypatch.setattr(installer_checks, "AUTOINSTALL_SCHEMA", tmp_path / "absent.json")
    with pytest.raises(ToolMissing, match="autoinstall schema is not available"):
        check_installer("ubuntu_autoinstall", files)


# --- hostile values ----------------------------------------------------------------------------

HOSTILE_COMMAND = (
    "echo \"it's\" '$(id)' `uname` \\\n"
    "%end\n"
    "rootpw --plaintext hacked\n"
    "d-i passwd/root-password password hacked\n"
    "  late-commands: [reboot]\n"
    "'; touch /pwned; echo '"
)


@pytest.mark.parametrize(("task_type", "node", "params"), list(_cases())[::3])
def test_hostile_post_install_command_stays_one_command(task_type, node, params):
    params = {**params, "post_install": [HOSTILE_COMMAND, "echo second"]}
    files = _render(task_type, node, params)
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
    files = _render(task_type, node={"hostname": HOSTILE_HOSTNAME, "domain": ""})
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
    files = _render(
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
        _render(task_type, **{section: values})


def test_kickstart_refuses_line_breaks_in_ssh_keys():
    with pytest.raises(RenderError, match="a line break is not allowed here"):
        _render("kickstart", params={"ssh_keys": ["ssh-ed25519 AAAA\n%end\nrootpw x"]})


def test_preseed_value_may_not_continue_onto_the_next_line():
    with pytest.raises(RenderError, match="must not end in a backslash"):
        _render("debian_preseed", params={"timezone": "UTC\\"})


@pytest.mark.parametrize("task_type", sorted(INSTALLER_FILES))
@pytest.mark.parametrize(
    "bad", ["vim; rm -rf /", "vim htop", "-oDpkg::Pre-Invoke::=id", "%end", "'q'"]
)
def test_package_names_are_refused_unless_plain(task_type, bad):
    if task_type == "kickstart" and bad.startswith("-"):
        bad = "-bad name"  # a leading "-" is kickstart's exclusion, tested below
    with pytest.raises(RenderError, match="not a package name"):
        _render(task_type, params={"packages": ["vim", bad]})


def test_kickstart_may_exclude_packages():
    files = _render(
        "kickstart", params={"packages": ["@^minimal-environment", "-firewalld", "kernel-tools*"]}
    )
    assert "\n-firewalld\n" in files["ks.cfg"]
    assert check_installer("kickstart", files) == []


@pytest.mark.parametrize("username", ["root:x", "../../etc", "Admin User", "a\nb", ""])
def test_usernames_must_be_login_names(username):
    with pytest.raises(RenderError, match="params.username is not a login name"):
        _render("cloud_init", params={"username": username})


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


# --- progress reports -------------------------------------------------------------------------


def _report_commands(task_type: str, text: str) -> list[str]:
    """The report commands in a rendered main file, as the installer's shell gets them.

    The first-boot report is a retry loop (``for attempt in ...; done || true``),
    found whole; the preseed's late script is base64-encoded, and decoded here.
    """
    if task_type == "debian_preseed":
        text += "\n" + _preseed_late_script(text)
    if task_type in ("ubuntu_autoinstall", "cloud_init"):
        strings: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, str):
                strings.append(node)
            elif isinstance(node, list):
                for item in node:
                    walk(item)
            elif isinstance(node, dict):
                for item in node.values():
                    walk(item)

        walk(yaml.safe_load(text))
        text = "\n".join(strings)
    return re.findall(r"(?:for attempt in [0-9 ]+; do )?(?:curl|wget) .*? \|\| true", text)


def _preseed_late_script(preseed: str) -> str:
    """The preseed's late script (run in the installed system by in-target), decoded."""
    encoded = re.search(r"late_command string if echo ([A-Za-z0-9+/=]+) > ", preseed).group(1)
    return base64.b64decode(encoded).decode()


@contextlib.contextmanager
def _controller(answers: list[int]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in for the controller's report endpoint on 127.0.0.1, recording each POST.

    It answers the first requests with the HTTP statuses in ``answers``, then 204.
    """
    received: list[dict[str, Any]] = []
    answers = list(answers)

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(
                {
                    "path": self.path,
                    "auth": self.headers.get("Authorization"),
                    "type": self.headers.get("Content-Type"),
                    "body": json.loads(body),
                }
            )
            self.send_response(answers.pop(0) if answers else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v1/report", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def report_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with _controller([]) as server:
        yield server


@pytest.mark.parametrize("task_type", sorted(INSTALLER_FILES))
def test_report_calls_reach_the_controller(task_type, report_server):
    url, received = report_server
    files = _render(task_type, install={"report_url": url})
    commands = _report_commands(task_type, files[MAIN_FILE[task_type]])
    assert len(commands) >= 3
    for command in commands:
        assert url in command and TOKEN in command
        subprocess.run(["bash", "-c", command], check=True, timeout=60)
    assert len(received) == len(commands)
    for request in received:
        assert request["path"] == "/api/v1/report"
        assert request["auth"] == f"Node {TOKEN}"
        assert request["type"] == "application/json"
        assert set(request["body"]) == {"status", "progress", "logs"}
        assert 0 <= request["body"]["progress"] <= 100
        assert all(isinstance(line, str) and line for line in request["body"]["logs"])
    statuses = [r["body"]["status"] for r in received]
    assert statuses[0] == "installing"
    # Every installer reports the end, and a failure where it has a hook or a test for one,
    # and (from the installed system) its first boot.
    assert {"installing", "installed", "failed", "active"} == set(statuses)
    [active] = [r["body"] for r in received if r["body"]["status"] == "active"]
    assert active == FIRST_BOOT_BODY


@pytest.mark.parametrize("task_type", sorted(INSTALLER_FILES))
def test_report_failure_never_fails_the_install(task_type):
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    files = _render(task_type, install={"report_url": "http://127.0.0.1:9/api/v1/report"})
    for command in _report_commands(task_type, files[MAIN_FILE[task_type]]):
        assert command.endswith(" || true")
        quick = command.replace("--retry 3", "--retry 0").replace("sleep 10", "sleep 0")
        assert (
            subprocess.run(["bash", "-c", quick], timeout=60, capture_output=True).returncode == 0
        )


def test_only_the_main_file_carries_commands():
    # meta-data and vendor-data are data: NoCloud reads them, nothing runs them.
    for task_type, main in MAIN_FILE.items():
        files = _render(task_type)
        assert REPORT_URL in files[main] and TOKEN in files[main]
        for name, content in files.items():
            if name != main:
                assert TOKEN not in content


# --- the first boot: installed -> active -------------------------------------------------------

FIRST_BOOT_BODY = {"status": "active", "progress": 100, "logs": ["first boot"]}
UNIT_NAME = "pureboot-first-boot.service"
# Installers after which the installed system boots from its disk, and write a
# first-boot unit: task type -> (where the installer sees the installed system,
# how it runs systemctl there).
FIRST_BOOT_SETUP = {
    "ubuntu_autoinstall": ("/target", "curtin in-target --target=/target -- "),
    "kickstart": ("", ""),  # %post runs chrooted into the installed system
    "debian_preseed": ("", ""),  # the late script runs under in-target
    "arch_bootstrap": ("/mnt", "in_chroot "),
}


def _first_boot_setup(task_type: str, main: str) -> str:
    """The sh code in a rendered main file that writes and enables the first-boot unit."""
    if task_type == "ubuntu_autoinstall":
        late = yaml.safe_load(main)["autoinstall"]["late-commands"]
        [main] = [c for c in late if isinstance(c, str) and UNIT_NAME in c]
    elif task_type == "debian_preseed":
        main = _preseed_late_script(main)
    pattern = rf"^mkdir -p \S*/etc/systemd/system .*?^.*systemctl enable {re.escape(UNIT_NAME)}$"
    [setup] = re.findall(pattern, main, re.M | re.S)
    return setup


def _outside_heredocs(script: str, change: Any) -> str:
    """``script`` with ``change(line)`` applied to each line that is not here-document text."""
    lines, terminator = [], None
    for line in script.splitlines():
        if terminator is not None:
            terminator = None if line == terminator else terminator
            lines.append(line)
            continue
        lines.append(change(line))
        if match := re.search(r"<<'(\w+)'$", line):
            terminator = match.group(1)
    assert terminator is None, "unterminated here-document"
    return "\n".join(lines) + "\n"


def _in_scratch(line: str) -> str:
    assert not re.search(r"(?<=[\s>])/(etc|usr|target|mnt)/", line), line
    return line


def _install_first_boot(task_type: str, main: str, scratch: Any) -> tuple[str, list[str]]:
    """Run the main file's first-boot setup with ``scratch`` as the installed system.

    Returns the unit file's text and the commands that ran systemctl (stubbed).
    """
    root, _ = FIRST_BOOT_SETUP[task_type]
    setup = _first_boot_setup(task_type, main)
    subprocess.run(["sh", "-n", "-c", setup], check=True, timeout=60)
    system_path = re.compile(rf"(?<=[\s>]){re.escape(root)}/(etc|usr)/")
    moved = _outside_heredocs(setup, lambda line: system_path.sub(rf"{scratch}/\1/", line))
    _outside_heredocs(moved, _in_scratch)  # nothing is written outside the scratch folder
    log = scratch / "systemctl.log"
    stubs = "".join(
        f'{name}() {{ printf "%s\\n" "{name} $*" >>{shlex.quote(str(log))}; }}\n'
        for name in ("systemctl", "curtin", "in_chroot")
    )
    subprocess.run(["sh", "-e", "-c", stubs + moved], check=True, timeout=60)
    unit = (scratch / "etc/systemd/system" / UNIT_NAME).read_text()
    return unit, log.read_text().splitlines()


def _unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: section -> key -> values, in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip().strip("[]"), {})
            continue
        key, sep, value = line.partition("=")
        assert sep, line
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.mark.parametrize(
    ("task_type", "node", "params"), [c for c in _cases() if c.values[0] in FIRST_BOOT_SETUP]
)
def test_first_boot_unit_is_installed_and_reports_active(
    task_type, node, params, tmp_path, report_server
):
    url, received = report_server
    main = _render(task_type, node, params, install={"report_url": url})[MAIN_FILE[task_type]]
    unit_text, systemctl = _install_first_boot(task_type, main, tmp_path)

    _, run_in_target = FIRST_BOOT_SETUP[task_type]
    assert systemctl == [f"{run_in_target}systemctl enable {UNIT_NAME}"]
    unit = _unit_settings(unit_text)
    assert unit["Unit"]["Wants"] == ["network-online.target"]
    assert unit["Unit"]["After"] == ["network-online.target"]
    assert unit["Service"]["Type"] == ["oneshot"]
    assert unit["Service"]["ExecStart"] == ["/usr/local/sbin/pureboot-first-boot"]
    # It runs once: disabled, then the unit and its program removed.
    assert unit["Service"]["ExecStartPost"] == [
        f"-/bin/systemctl disable {UNIT_NAME}",
        f"/bin/rm -f /etc/systemd/system/{UNIT_NAME} /usr/local/sbin/pureboot-first-boot",
    ]
    assert unit["Install"] == {"WantedBy": ["multi-user.target"]}
    assert TOKEN not in unit_text  # unit files are world-readable

    program = tmp_path / unit["Service"]["ExecStart"][0].lstrip("/")
    assert program.stat().st_mode & 0o777 == 0o700  # it holds the token
    text = program.read_text()
    assert text.startswith("#!/bin/sh\n") and TOKEN in text and '"status":"active"' in text
    if shutil.which("shellcheck"):
        check = subprocess.run(
            ["shellcheck", "--shell=sh", "--severity=warning", "-"],
            input=text, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert check.returncode == 0, check.stdout

    # The unit's ExecStart, as systemd would run it on the first boot.
    subprocess.run([str(program)], check=True, timeout=60)
    assert received == [
        {
            "path": "/api/v1/report",
            "auth": f"Node {TOKEN}",
            "type": "application/json",
            "body": FIRST_BOOT_BODY,
        }
    ]


HOSTILE_TOKEN = TOKEN + "'$(touch /tmp/pwned)`id`\"%n$HOME\\"


@pytest.mark.parametrize("task_type", sorted(FIRST_BOOT_SETUP))
def test_first_boot_report_carries_any_token_through_every_layer(
    task_type, tmp_path, report_server
):
    # YAML, base64, the here-document and the shell: the token arrives as it was.
    url, received = report_server
    install = {"report_url": url + "?node='42'&x=$(id)", "token": HOSTILE_TOKEN}
    files = _render(task_type, install=install)
    assert check_installer(task_type, files) == []
    _install_first_boot(task_type, files[MAIN_FILE[task_type]], tmp_path)
    subprocess.run([str(tmp_path / "usr/local/sbin/pureboot-first-boot")], check=True, timeout=60)
    [request] = received
    assert request["auth"] == f"Node {HOSTILE_TOKEN}"
    assert request["path"] == "/api/v1/report?node='42'&x=$(id)"
    assert request["body"] == FIRST_BOOT_BODY


@pytest.mark.parametrize("task_type", sorted(FIRST_BOOT_SETUP))
def test_first_boot_setup_runs_before_the_installed_report(task_type):
    main = _render(task_type)[MAIN_FILE[task_type]]
    if task_type == "ubuntu_autoinstall":
        late = yaml.safe_load(main)["autoinstall"]["late-commands"]
        assert UNIT_NAME in late[-2] and '"status":"installed"' in late[-1]
    elif task_type == "kickstart":
        # in a chroot %post that fails the install if the unit cannot be written
        section = re.search(
            r"^%post ([^\n]*)\n((?:(?!%end).)*?systemctl enable)", main, re.M | re.S
        )
        assert "--nochroot" not in section.group(1) and "--erroronfail" in section.group(1)
        assert section.group(2).startswith("set -e\n")
        assert main.index(f"systemctl enable {UNIT_NAME}") < main.rindex('"status":"installed"')
    elif task_type == "debian_preseed":
        # the late script (set -e) decides between the installed and the failed report
        assert _preseed_late_script(main).startswith("set -e\n")
        include = re.search(r"^d-i pkgsel/include string (.*)$", main, re.M).group(1)
        assert "curl" in include.split()  # for the report; Debian's standard task lacks it
    else:
        assert main.index(f"systemctl enable {UNIT_NAME}") < main.rindex("\nreport_installed\n")


@pytest.mark.parametrize("task_type", sorted(FIRST_BOOT_SETUP))
@pytest.mark.parametrize(("answers", "posts"), [([503, 503], 3), ([503] * 6, 6)])
def test_first_boot_report_retries_then_gives_up_quietly(task_type, answers, posts, tmp_path):
    with _controller(answers) as (url, received):
        main = _render(task_type, install={"report_url": url})[MAIN_FILE[task_type]]
        _install_first_boot(task_type, main, tmp_path)
        program = tmp_path / "usr/local/sbin/pureboot-first-boot"
        text = program.read_text()
        assert "sleep 10" in text
        program.write_text(text.replace("sleep 10", "sleep 0"))  # the pause, not the test's time
        result = subprocess.run([str(program)], timeout=60, capture_output=True)
    assert result.returncode == 0
    assert [r["body"] for r in received] == [FIRST_BOOT_BODY] * posts


def test_cloud_init_reports_active_right_after_installed(tmp_path, report_server):
    url, received = report_server
    doc = yaml.safe_load(_render("cloud_init", install={"report_url": url})["user-data"])
    final = doc["runcmd"][-1]
    assert "/run/pureboot-failed" in final and TOKEN in final
    failed = tmp_path / "pureboot-failed"
    command = final.replace("/run/pureboot-failed", str(failed))

    subprocess.run(["sh", "-c", command], check=True, timeout=60)  # as cloud-init's runcmd
    assert [r["body"]["status"] for r in received] == ["installed", "active"]
    assert received[1]["body"] == FIRST_BOOT_BODY
    assert received[1]["auth"] == f"Node {TOKEN}"

    received.clear()
    failed.touch()
    subprocess.run(["sh", "-c", command], check=True, timeout=60)
    assert [r["body"]["status"] for r in received] == ["failed"]


def test_raspberrypi_os_finish_service_reports_active_after_installed(tmp_path, report_server):
    url, received = report_server
    script = _render("raspberrypi_os", params=BARE_PARAMS, install={"report_url": url})[
        "firstrun.sh"
    ]
    assert "ExecStart=/usr/local/sbin/pureboot-finish" in script
    function = re.search(r"^pureboot_finish\(\) \{\n.*?^\}\n", script, re.M | re.S).group()
    assert '"status":"active"' in function and TOKEN in function
    failed = tmp_path / "firstrun-failed"
    function = function.replace("/var/lib/pureboot/firstrun-failed", str(failed))
    # The service's own clean-up stays away from this machine.
    run = "systemctl() { :; }\nrm() { :; }\n" + function + "pureboot_finish\n"

    subprocess.run(["bash", "-c", run], check=True, timeout=60)
    assert [r["body"]["status"] for r in received] == ["installing", "installed", "active"]
    assert received[-1]["body"] == FIRST_BOOT_BODY
    assert received[-1]["auth"] == f"Node {TOKEN}"

    received.clear()
    failed.touch()
    subprocess.run(["bash", "-c", run], check=True, timeout=60)
    assert [r["body"]["status"] for r in received] == ["installing", "failed"]


def test_report_retry_loop_and_its_limits():
    def render(arguments: str) -> str:
        template = environment().from_string(f'{{{{ report("active", 100, "x", {arguments}) }}}}')
        return template.render(sample_context())

    command = render("attempts=3, delay=5")
    assert command.startswith("for attempt in 1 2 3; do curl -fsS --max-time 20 -o /dev/null ")
    assert command.endswith(' && break; [ "$attempt" = 3 ] || sleep 5; done || true')
    assert "--retry" not in command  # the loop retries; each request once
    assert " --retry 3 " in render("attempts=1")
    for arguments in ("attempts=0", "attempts=21", "attempts='3'", "delay=-1", "delay=301"):
        with pytest.raises(Exception, match=r"^report: (attempts|delay) must be"):
            render(arguments)


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
        _render("kickstart", params=params)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"arch": "armhf", "firmware": "uefi"}, "no armhf port"),
        ({"arch": "aarch64", "firmware": "bios"}, "UEFI firmware only"),
    ],
)
def test_arch_bootstrap_refuses_machines_it_cannot_install(node, message):
    with pytest.raises(RenderError, match=message):
        _render("arch_bootstrap", node=node)


def test_templates_render_in_a_sandbox():
    from jinja2.exceptions import SecurityError

    from workflows.rendering import environment

    template = environment().from_string("{{ node.__class__.__mro__ }}")
    with pytest.raises(SecurityError):
        template.render(sample_context())


@pytest.mark.parametrize("task_type", ["ubuntu_autoinstall", "cloud_init"])
def test_duplicate_yaml_keys_are_problems(task_type):
    files = _render(task_type)
    doubled = {**files, "user-data": files["user-data"] + 'timezone: "Europe/Paris"\n'}
    if task_type == "ubuntu_autoinstall":
        doubled["user-data"] = files["user-data"] + '  timezone: "Europe/Paris"\n'
    problems = check_installer(task_type, doubled)
    assert any("found duplicate key 'timezone'" in p for p in problems)
