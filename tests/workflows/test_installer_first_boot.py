"""The first boot: installed -> active.

The first-boot unit's setup is run for real (into a scratch folder), and so is
its ExecStart program, against an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from workflows.installer_checks import check_installer
from workflows.rendering import MAIN_FILE

from .installer_context import TOKEN
from .installer_helpers import (
    BARE_PARAMS,
    FIRST_BOOT_BODY,
    installer_cases,
    preseed_late_script,
    render_sample,
    report_controller,
)

# --- the first boot: installed -> active -------------------------------------------------------

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
        main = preseed_late_script(main)
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
    ("task_type", "node", "params"),
    [c for c in installer_cases() if c.values[0] in FIRST_BOOT_SETUP],
)
def test_first_boot_unit_is_installed_and_reports_active(
    task_type, node, params, tmp_path, report_server
):
    url, received = report_server
    main = render_sample(task_type, node, params, install={"report_url": url})[MAIN_FILE[task_type]]
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
    files = render_sample(task_type, install=install)
    assert check_installer(task_type, files) == []
    _install_first_boot(task_type, files[MAIN_FILE[task_type]], tmp_path)
    subprocess.run([str(tmp_path / "usr/local/sbin/pureboot-first-boot")], check=True, timeout=60)
    [request] = received
    assert request["auth"] == f"Node {HOSTILE_TOKEN}"
    assert request["path"] == "/api/v1/report?node='42'&x=$(id)"
    assert request["body"] == FIRST_BOOT_BODY


@pytest.mark.parametrize("task_type", sorted(FIRST_BOOT_SETUP))
def test_first_boot_setup_runs_before_the_installed_report(task_type):
    main = render_sample(task_type)[MAIN_FILE[task_type]]
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
        assert preseed_late_script(main).startswith("set -e\n")
        include = re.search(r"^d-i pkgsel/include string (.*)$", main, re.M).group(1)
        assert "curl" in include.split()  # for the report; Debian's standard task lacks it
    else:
        assert main.index(f"systemctl enable {UNIT_NAME}") < main.rindex("\nreport_installed\n")


@pytest.mark.parametrize("task_type", sorted(FIRST_BOOT_SETUP))
@pytest.mark.parametrize(("answers", "posts"), [([503, 503], 3), ([503] * 6, 6)])
def test_first_boot_report_retries_then_gives_up_quietly(task_type, answers, posts, tmp_path):
    with report_controller(answers) as (url, received):
        main = render_sample(task_type, install={"report_url": url})[MAIN_FILE[task_type]]
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
    doc = yaml.safe_load(render_sample("cloud_init", install={"report_url": url})["user-data"])
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
    script = render_sample("raspberrypi_os", params=BARE_PARAMS, install={"report_url": url})[
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
