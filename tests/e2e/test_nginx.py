"""The production set-up: deploy/nginx/pureboot.conf.template in front of gunicorn.

A real nginx (Debian ``nginx-light``) with the shipped template, in front of
gunicorn started with deploy/gunicorn.conf.py and PUREBOOT_ACCEL_REDIRECT set,
on a throwaway SQLite database. Kernels leave through nginx (X-Accel-Redirect),
never through a worker; boot scripts and refusals stay Django's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.processes import stop

REPO = Path(__file__).resolve().parents[2]
KERNEL = bytes(range(256)) * 4096  # 1 MiB, every byte value
MAC = "52:54:00:0e:2e:01"


def _nginx() -> str:
    path = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if path is None:
        pytest.fail("nginx is missing: apt-get install nginx-light (Debian package)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{url} did not answer within 60 s:\n{log.read_text()}")


def render_template(values: dict[str, str]) -> str:
    """The template with its ${PUREBOOT_...} values filled in, as envsubst does."""
    text = (REPO / "deploy" / "nginx" / "pureboot.conf.template").read_text()
    names = set(re.findall(r"\$\{(PUREBOOT_[A-Z_]+)\}", text))
    assert names == set(values), f"the template uses {sorted(names)}"
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    return text


class Stack(NamedTuple):
    web: str  # nginx
    app: str  # gunicorn
    work: Path  # its folder: logs, var, boot root
    env: dict  # the web process's environment


@contextmanager
def running_stack(*, workers: int = 1, env: dict | None = None, keep=("REDIS_URL",)):
    """gunicorn (deploy/gunicorn.conf.py, ``workers``) behind nginx (the shipped
    template) on a throwaway SQLite database; ``env`` adds to the web process's
    environment; the variables in ``keep`` are passed on from the test's own."""
    nginx = _nginx()
    # Outside pytest's private temporary directory: nginx's workers must read it.
    work = Path(tempfile.mkdtemp(prefix="pureboot-nginx-"))
    os.chmod(work, 0o755)
    for sub in ("var", "var/static", "boot/ubuntu", "images", "tmp"):
        (work / sub).mkdir(parents=True)
        os.chmod(work / sub, 0o755)
    os.chmod(work / "tmp", 0o777)
    (work / "boot" / "ubuntu" / "vmlinuz").write_bytes(KERNEL)
    (work / "var" / "static" / "pureboot-test.css").write_text("body { color: black; }\n")
    app_port, web_port = _free_port(), _free_port()
    dropped = {"DATABASE_URL", "REDIS_URL"} - set(keep)
    full_env = {k: v for k, v in os.environ.items() if k not in dropped} | {
        "PUREBOOT_VAR_DIR": str(work / "var"),
        "PUREBOOT_BOOT_ROOT": str(work / "boot"),
        "PUREBOOT_IMAGE_ROOT": str(work / "images"),
        "PUREBOOT_LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "pureboot.settings",
        "PYTHONPATH": str(REPO),
        **(env or {}),
    }
    subprocess.run(
        [sys.executable, str(REPO / "manage.py"), "migrate", "--noinput", "-v", "0"],
        env=full_env,
        cwd=REPO,
        check=True,
    )
    conf = render_template(
        {
            "PUREBOOT_NGINX_LISTEN": f"127.0.0.1:{web_port}",
            "PUREBOOT_UPSTREAM": f"127.0.0.1:{app_port}",
            "PUREBOOT_BOOT_ROOT": str(work / "boot"),
            "PUREBOOT_IMAGE_ROOT": str(work / "images"),
            "PUREBOOT_STATIC_ROOT": str(work / "var" / "static"),
            "PUREBOOT_NGINX_ACCESS_LOG": str(work / "pureboot.access.log"),
        }
    )
    (work / "pureboot.conf").write_text(conf)
    temp = "".join(
        f"{kind}_temp_path {work}/tmp/{kind}; "
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (work / "nginx.conf").write_text(
        f"daemon off; worker_processes 1; pid {work}/nginx.pid;\n"
        f"error_log {work}/nginx.log warn;\n"
        "events { worker_connections 256; }\n"
        f"http {{ access_log {work}/access.log; {temp}\n"
        f"  include {work}/pureboot.conf;\n}}\n"
    )
    gunicorn = Path(sys.executable).with_name("gunicorn")
    app_log, web_log = (work / "gunicorn.log").open("ab"), (work / "nginx.out").open("ab")
    procs = [
        subprocess.Popen(
            [str(gunicorn), "-c", str(REPO / "deploy" / "gunicorn.conf.py")]
            + ["--workers", str(workers)]
            + ["--access-logfile", str(work / "gunicorn.access.log")]
            + ["--bind", f"127.0.0.1:{app_port}", "pureboot.wsgi"],
            env=full_env,
            cwd=REPO,
            stdout=app_log,
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [nginx, "-c", str(work / "nginx.conf"), "-e", str(work / "nginx.log")],
            stdout=web_log,
            stderr=subprocess.STDOUT,
        ),
    ]
    try:
        _wait(f"http://127.0.0.1:{app_port}/boot/ipxe", procs[0], work / "gunicorn.log")
        _wait(f"http://127.0.0.1:{web_port}/boot/ipxe", procs[1], work / "nginx.log")
        yield Stack(f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{app_port}", work, full_env)
    finally:
        for proc in procs:
            stop(proc)
        app_log.close()
        web_log.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def stack():
    """A running stack with PUREBOOT_ACCEL_REDIRECT set; stopped afterwards."""
    with running_stack(env={"PUREBOOT_ACCEL_REDIRECT": "/protected-images/"}, keep=()) as running:
        yield running


def fetch(url: str, method: str = "GET", data: bytes | None = None, **headers):
    """(status, headers, body); HTTP errors are answers too."""
    request = urllib.request.Request(url, method=method, headers=headers, data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def test_django_only_names_the_file(stack):
    app = stack.app
    status, headers, body = fetch(f"{app}/boot/files/ubuntu/vmlinuz")
    assert status == 200 and body == b""
    assert headers["X-Accel-Redirect"] == "/protected-boot/ubuntu/vmlinuz"


def test_nginx_sends_the_kernel_with_range_and_head(stack):
    web = stack.web
    status, headers, body = fetch(f"{web}/boot/files/ubuntu/vmlinuz")
    assert status == 200 and body == KERNEL
    assert "X-Accel-Redirect" not in headers and headers["Server"].startswith("nginx")
    status, headers, body = fetch(f"{web}/boot/files/ubuntu/vmlinuz", Range="bytes=1000-1999")
    assert status == 206 and body == KERNEL[1000:2000]
    assert headers["Content-Range"] == f"bytes 1000-1999/{len(KERNEL)}"
    status, headers, body = fetch(f"{web}/boot/files/ubuntu/vmlinuz", method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(KERNEL))


def test_internal_locations_and_escapes_stay_closed(stack):
    web = stack.web
    assert fetch(f"{web}/protected-boot/ubuntu/vmlinuz")[0] == 404
    assert fetch(f"{web}/protected-images/anything")[0] == 404
    for bad in ("nope", "..%2F..%2Fetc%2Fpasswd", "ubuntu/..%2F..%2Fsecret"):
        status, headers, _ = fetch(f"{web}/boot/files/{bad}")
        assert status in (400, 404) and "X-Accel-Redirect" not in headers


def test_boot_scripts_come_from_django_naming_nginx(stack):
    web = stack.web
    status, headers, body = fetch(f"{web}/boot/ipxe?mac={MAC}&platform=efi")
    assert status == 200 and body.startswith(b"#!ipxe")
    assert f"chain --replace --autofree {web}/boot/ipxe?mac=".encode() in body
    assert headers["Cache-Control"] == "no-store"
    assert fetch(f"{web}/boot/ipxe?mac=zz")[0] == 400


def test_static_files_and_request_limits(stack):
    web = stack.web
    status, _, body = fetch(f"{web}/static/pureboot-test.css")
    assert status == 200 and body.startswith(b"body")
    big = b"x" * (3 * 1024 * 1024)
    status, _, _ = fetch(
        f"{web}/api/v1/auth/token", method="POST", data=big, **{"Content-Type": "text/plain"}
    )
    assert status == 413  # nginx refuses it before a worker reads it


# --- no secret in a log ---------------------------------------------------------

INSTALL_SCRIPT = """
from nodes import services as node_services
from tests.factories import make_node, make_workflow
from workflows import services
node = make_node(macs=["52:54:00:0e:2e:77"])
flow = make_workflow("logcheck", "name: logcheck\\ntasks:\\n  - type: pxe_boot\\n"
                     "    kernel: /ubuntu/vmlinuz\\n    initrd: /ubuntu/vmlinuz\\n"
                     "  - type: ubuntu_autoinstall\\n")
node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=flow)
print(services.start_install(node.pk)[2])
"""


def test_no_token_or_password_reaches_any_log(stack):
    """Red team: node install tokens appeared in the web log on 404s."""
    token = (
        subprocess.run(
            [sys.executable, str(REPO / "manage.py"), "shell", "-c", INSTALL_SCRIPT],
            env=stack.env,
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert len(token) > 20
    password = "Sekrit-Pa55word-For-Logs"
    for base in (stack.web, stack.app):
        assert fetch(f"{base}/api/v1/install/{token}/user-data")[0] == 200
        for name in ("nope", "../../etc/passwd"):  # refused: logged by Django and gunicorn
            assert fetch(f"{base}/api/v1/install/{token}/{name}")[0] in (400, 404)
        assert fetch(f"{base}/api/v1/install/{token}x/user-data")[0] in (403, 404)
        assert fetch(f"{base}/api/v1/install/{token}/nope?token={token}")[0] in (400, 404)
        status, _, _ = fetch(
            f"{base}/api/v1/auth/token",
            method="POST",
            data=json.dumps({"username": "nobody", "password": password}).encode(),
            **{"Content-Type": "application/json"},
        )
        assert status == 401
        fetch(f"{base}/api/v1/nodes", Authorization=f"Bearer {token}")
        for auth in (f"Node {token}", f"Node {token}x"):  # a node's reports: 400, 401
            fetch(
                f"{base}/api/v1/report",
                method="POST",
                data=b'{"status": "nonsense"}',
                Authorization=auth,
                Referer=f"{base}/api/v1/install/{token}/user-data",
                **{"Content-Type": "application/json"},
            )
    time.sleep(0.5)  # nginx and gunicorn write their lines after answering
    logs = [p for p in stack.work.iterdir() if p.suffix == ".log"]
    names = {p.name for p in logs}
    assert {"gunicorn.log", "gunicorn.access.log", "pureboot.access.log", "nginx.log"} <= names
    seen = "".join(p.read_text(errors="replace") for p in logs)
    assert "/api/v1/install/[redacted]/user-data" in seen  # the requests were logged...
    assert token not in seen and token[:20] not in seen  # ...without their token
    assert password not in seen


def test_metrics_through_nginx_need_a_token(stack):
    """Through nginx every request reaches gunicorn from loopback: nginx passes /metrics on
    only with credentials, which PureBoot then checks (a wrong one is refused)."""
    status, _headers, _body = fetch(f"{stack.web}/metrics")
    assert status == 403
    status, _headers, body = fetch(f"{stack.web}/metrics", Authorization="Bearer guess")
    assert status == 403 and b"permission_denied" in body
    status, _headers, body = fetch(f"{stack.app}/metrics")  # gunicorn itself, from loopback
    assert status == 200 and b"pureboot_boot_decisions_total" in body
