"""The PUREBOOT_SYSLOG_* and PUREBOOT_WEBHOOK_* variables, read by the real settings module.

One fresh Python process loads pureboot.settings once per case (reloading the
module with each case's variables), as `make run` or gunicorn would read them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RUN = """
import importlib, json, os, sys
from django.core.exceptions import ImproperlyConfigured
cases = json.loads(sys.argv[1])
base = dict(os.environ)
out = []
for env in cases:
    os.environ.clear()
    os.environ.update(base, **env)
    try:
        import pureboot.settings as s
        s = importlib.reload(s)
        out.append({"ok": [s.PUREBOOT_SYSLOG_URL, s.PUREBOOT_WEBHOOK_TIMEOUT]})
    except ImproperlyConfigured as exc:
        out.append({"error": str(exc)})
print(json.dumps(out))
"""


def test_malformed_values_stop_start_up_naming_the_variable(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("checked when a connection is made\n")
    cases = [
        ({"PUREBOOT_SYSLOG_URL": "tls://siem.example.org:6514", "PUREBOOT_SYSLOG_CA_FILE": str(ca)},
         None),
        ({"PUREBOOT_SYSLOG_URL": "udp://siem.example.org:514"}, "PUREBOOT_SYSLOG_URL must be"),
        ({"PUREBOOT_SYSLOG_URL": "tcp://siem.example.org"}, "PUREBOOT_SYSLOG_URL must be"),
        ({"PUREBOOT_SYSLOG_URL": "tcp://siem.example.org:70000"}, "port must be 1-65535"),
        ({"PUREBOOT_SYSLOG_URL": "tls://s:6514", "PUREBOOT_SYSLOG_CA_FILE": "/nonexistent.pem"},
         "PUREBOOT_SYSLOG_CA_FILE: no such file"),
        ({"PUREBOOT_SYSLOG_URL": "tcp://s:514", "PUREBOOT_SYSLOG_CA_FILE": str(ca)},
         "PUREBOOT_SYSLOG_CA_FILE needs PUREBOOT_SYSLOG_URL=tls://"),
        ({"PUREBOOT_SYSLOG_URL": "tls://s:6514", "PUREBOOT_SYSLOG_CERT_FILE": str(ca)},
         "go together"),
        ({"PUREBOOT_SYSLOG_TIMEOUT": "soon"}, "PUREBOOT_SYSLOG_TIMEOUT must be an integer"),
        ({"PUREBOOT_WEBHOOK_TIMEOUT": "500"}, "PUREBOOT_WEBHOOK_TIMEOUT must be 1-120"),
        ({"PUREBOOT_WEBHOOK_MAX_ATTEMPTS": "0"}, "WEBHOOK_MAX_ATTEMPTS must be at least 1"),
        ({"PUREBOOT_WEBHOOK_DELIVERY_DAYS": "0"}, "DELIVERY_DAYS must be at least 1"),
        ({"PUREBOOT_WEBHOOK_DELIVERY_DAYS": "a month"}, "DELIVERY_DAYS must be an integer"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUREBOOT_")}
    env.update(
        PUREBOOT_VAR_DIR=str(tmp_path / "var"),
        DJANGO_SETTINGS_MODULE="pureboot.settings",
        PYTHONPATH=str(ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-c", RUN, json.dumps([c for c, _ in cases])],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    for (case, expected), answer in zip(cases, answers, strict=True):
        if expected is None:
            assert answer == {"ok": ["tls://siem.example.org:6514", 10]}, case
        else:
            assert expected in answer.get("error", ""), (case, answer)
