"""Progress reports: every installer's report calls reach the controller and never
fail the install.

The report calls are run for real with curl/wget against an HTTP server on
127.0.0.1 (the report_server fixture, tests/workflows/conftest.py).
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml

from workflows.rendering import INSTALLER_FILES, MAIN_FILE, environment

from .installer_context import REPORT_URL, TOKEN, sample_context
from .installer_helpers import FIRST_BOOT_BODY, preseed_late_script, render_sample

# --- progress reports -------------------------------------------------------------------------

# The installers that report with a POSIX shell; windows_install reports from cmd.exe and
# PowerShell (tests/workflows/test_windows_unattend.py).
SHELL_INSTALLERS = sorted(set(INSTALLER_FILES) - {"windows_install"})


def _report_commands(task_type: str, text: str) -> list[str]:
    """The report commands in a rendered main file, as the installer's shell gets them.

    The first-boot report is a retry loop (``for attempt in ...; done || true``),
    found whole; the preseed's late script is base64-encoded, and decoded here.
    """
    if task_type == "debian_preseed":
        text += "\n" + preseed_late_script(text)
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


@pytest.mark.parametrize("task_type", SHELL_INSTALLERS)
def test_report_calls_reach_the_controller(task_type, report_server):
    url, received = report_server
    files = render_sample(task_type, install={"report_url": url})
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


@pytest.mark.parametrize("task_type", SHELL_INSTALLERS)
def test_report_failure_never_fails_the_install(task_type):
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    files = render_sample(task_type, install={"report_url": "http://127.0.0.1:9/api/v1/report"})
    for command in _report_commands(task_type, files[MAIN_FILE[task_type]]):
        assert command.endswith(" || true")
        quick = command.replace("--retry 3", "--retry 0").replace("sleep 10", "sleep 0")
        assert (
            subprocess.run(["bash", "-c", quick], timeout=60, capture_output=True).returncode == 0
        )


def test_only_the_main_file_carries_commands():
    # meta-data and vendor-data are data: NoCloud reads them, nothing runs them.
    for task_type, main in MAIN_FILE.items():
        files = render_sample(task_type)
        assert REPORT_URL in files[main] and TOKEN in files[main]
        for name, content in files.items():
            if name != main:
                assert TOKEN not in content


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
