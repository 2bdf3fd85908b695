"""Shared by the tests/workflows/test_installer_*.py files: sample nodes, rendering,
and a stand-in for the controller's report endpoint.

The context itself comes from installer_context.sample_context; this module adds
the node/parameter variants the tests render for, and the helpers that more than
one test file uses.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from workflows.rendering import INSTALLER_FILES, render_installer

from .installer_context import ED25519_KEY, ROOT_HASH, RSA_KEY, sample_context

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
# windows_install has its own cases (tests/workflows/test_windows_unattend.py).
GENERIC_TYPES = sorted(set(INSTALLER_FILES) - {"raspberrypi_os", "windows_install"})


def installer_cases() -> Iterator[Any]:
    """pytest.param(task_type, node, params) for each generic type x VARIANTS, then the Pis."""
    for task_type in GENERIC_TYPES:
        for name, (node, params) in VARIANTS.items():
            yield pytest.param(task_type, node, params, id=f"{task_type}-{name}")
    for name, (node, params) in PI_VARIANTS.items():
        yield pytest.param("raspberrypi_os", node, params, id=f"raspberrypi_os-{name}")


def render_sample(task_type: str, node: dict | None = None, params: dict | None = None, **kw):
    """render_installer() on sample_context(task_type, ...) with these overrides merged in."""
    return render_installer(task_type, sample_context(task_type, node=node, params=params, **kw))


# --- progress reports ------------------------------------------------------------------------

# What the installed system's first-boot program reports.
FIRST_BOOT_BODY = {"status": "active", "progress": 100, "logs": ["first boot"]}


def preseed_late_script(preseed: str) -> str:
    """The preseed's late script (run in the installed system by in-target), decoded."""
    encoded = re.search(r"late_command string if echo ([A-Za-z0-9+/=]+) > ", preseed).group(1)
    return base64.b64decode(encoded).decode()


@contextlib.contextmanager
def report_controller(
    answers: list[int], files: dict[str, tuple[int, bytes]] | None = None
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in for the controller's report endpoint on 127.0.0.1, recording each POST.

    It answers the first requests with the HTTP statuses in ``answers``, then 204.
    A GET of a path in ``files`` gets its (status, body); any other GET a 404, as
    ``/api/v1/install/<token>/<name>`` answers for a file the install does not serve.
    """
    received: list[dict[str, Any]] = []
    answers = list(answers)
    files = {} if files is None else files

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = files.get(self.path, (404, b"No such installer file.\n"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

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
