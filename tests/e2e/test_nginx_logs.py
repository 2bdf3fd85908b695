"""No secret in nginx's error log: the shipped template when gunicorn is down.

nginx's error log has a fixed format that names the request line. When the
upstream is unreachable (gunicorn restarting while a machine installs) every
request is an error there; a node token in the path must not be written.
The answered requests of a running stack are grepped in
tests/e2e/test_nginx.py::test_no_token_or_password_reaches_any_log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.e2e.test_nginx import _free_port, _nginx, _wait, fetch, render_template
from tests.processes import stop

TOKEN = "eyJyIjo0MiwibiI6NywieCI6ImFiYyJ9:Qm9ndXMtc2lnbmF0dXJlLWZvci10aGUtdGVzdDAx"


def test_a_token_in_the_path_never_reaches_nginx_error_log():
    nginx = _nginx()
    work = Path(tempfile.mkdtemp(prefix="pureboot-nginx-logs-"))
    os.chmod(work, 0o755)
    for sub in ("boot", "images", "static", "tmp"):
        (work / sub).mkdir()
        os.chmod(work / sub, 0o777 if sub == "tmp" else 0o755)
    web_port, dead_port = _free_port(), _free_port()  # nothing listens on dead_port
    (work / "pureboot.conf").write_text(
        render_template(
            {
                "PUREBOOT_NGINX_LISTEN": f"127.0.0.1:{web_port}",
                "PUREBOOT_UPSTREAM": f"127.0.0.1:{dead_port}",
                "PUREBOOT_BOOT_ROOT": str(work / "boot"),
                "PUREBOOT_IMAGE_ROOT": str(work / "images"),
                "PUREBOOT_STATIC_ROOT": str(work / "static"),
                "PUREBOOT_NGINX_ACCESS_LOG": str(work / "pureboot.access.log"),
            }
        )
    )
    temp = "".join(
        f"{kind}_temp_path {work}/tmp/{kind}; "
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (work / "nginx.conf").write_text(
        f"daemon off; worker_processes 1; pid {work}/nginx.pid;\n"
        f"error_log {work}/nginx.log info;\n"
        "events { worker_connections 64; }\n"
        f"http {{ {temp}\n  include {work}/pureboot.conf;\n}}\n"
    )
    out = (work / "nginx.out").open("ab")
    proc = subprocess.Popen(
        [nginx, "-c", str(work / "nginx.conf"), "-e", str(work / "nginx.log")],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(f"http://127.0.0.1:{web_port}/static/none", proc, work / "nginx.log")
        web = f"http://127.0.0.1:{web_port}"
        for path in (
            f"/api/v1/install/{TOKEN}/user-data",
            f"/api/v1/install/{TOKEN}/no-such-file",
            f"/api/v1/install/{TOKEN}x/meta-data",
            f"/oidc/callback/?code={TOKEN}&state=abc",
        ):
            assert fetch(web + path)[0] == 502
        assert fetch(f"{web}/api/v1/nodes?page=2")[0] == 502  # an error log line, to compare
        time.sleep(0.3)
    finally:
        stop(proc)
        out.close()
    try:
        error_log = (work / "nginx.log").read_text(errors="replace")
        access_log = (work / "pureboot.access.log").read_text(errors="replace")
        assert "/api/v1/nodes?page=2" in error_log  # upstream errors are logged...
        assert "/api/v1/install/[redacted]/user-data" in access_log  # and every request
        assert "/oidc/callback/ " in access_log
        for text in (error_log, access_log):
            assert TOKEN not in text and TOKEN[:20] not in text  # ...never the token
    finally:
        shutil.rmtree(work, ignore_errors=True)
