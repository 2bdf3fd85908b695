"""HTTP benchmark: ``/boot/ipxe`` against a bare WSGI app and nginx.

Run by ``make bench`` after the TFTP part. A throwaway SQLite database gets
10,000 discovered nodes; gunicorn serves PureBoot (``pureboot.wsgi``, as in
production), and under the same configuration a bare WSGI app (bare_wsgi.py)
that returns a body of the same size; nginx serves a static file of that
size. Servers run on CPU 0, wrk (Debian's) on CPU 1, 50 connections. Every
request asks for a random one of the 10,000 MACs (wrk script
``random_mac.lua``, the same for all three servers), so no answer is ever
served twice in a row and ``last_seen_at`` is written for each node once per
PUREBOOT_LAST_SEEN_SECONDS. The queries per request are counted in-process
through the same WSGI application, for a request that refreshes
``last_seen_at`` and one that does not.

Environment: BENCH_QUICK=1 (one 3-second run), BENCH_RUNS (default 3),
BENCH_HTTP_SECONDS (default 10 per run), BENCH_HTTP_WORKERS (gunicorn
workers, default 2; the rest of gunicorn's settings are
deploy/gunicorn.conf.py's).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from shutil import rmtree, which

from tftp_bench import apt_install  # this directory is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
SERVER_CPU, CLIENT_CPU = "0", "1"
QUICK = os.environ.get("BENCH_QUICK") == "1"
RUNS = int(os.environ.get("BENCH_RUNS", "1" if QUICK else "3"))
SECONDS = int(os.environ.get("BENCH_HTTP_SECONDS", "3" if QUICK else "10"))
WORKERS = os.environ.get("BENCH_HTTP_WORKERS", "2")
NODES = 10_000
CONNECTIONS = 50
MAC = "02:00:00:00:12:34"  # one of the seeded nodes (index 0x1234)


def seed(count: int) -> None:
    """Run inside Django: ``count`` discovered nodes, one interface each."""
    import django

    django.setup()
    from nodes.models import NetworkInterface, Node

    nodes = Node.objects.bulk_create([Node() for _ in range(count)], batch_size=1000)
    NetworkInterface.objects.bulk_create(
        [NetworkInterface(node=node, mac=_mac(i), is_primary=True) for i, node in enumerate(nodes)],
        batch_size=1000,
    )


def count_queries() -> None:
    """Run inside Django: the queries of /boot/ipxe requests for a known node.

    Through ``pureboot.wsgi.application``, what gunicorn serves: a first
    request (it refreshes last_seen_at) and a second one (it does not).
    """
    from io import BytesIO
    from wsgiref.util import setup_testing_defaults

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from pureboot.wsgi import application

    counts, statuses = [], set()
    for _ in range(2):
        environ = {"PATH_INFO": "/boot/ipxe", "QUERY_STRING": f"mac={MAC}", "HTTP_HOST": HOST}
        setup_testing_defaults(environ)
        environ["wsgi.input"] = BytesIO()
        with CaptureQueriesContext(connection) as ctx:
            b"".join(application(environ, lambda status, headers: statuses.add(status)))
        counts.append(len(ctx.captured_queries))
    print(f"queries={max(counts)} ({'/'.join(map(str, counts))}) status={','.join(statuses)}")


def _mac(i: int) -> str:
    return "02:00:" + ":".join(f"{(i >> s) & 0xFF:02x}" for s in (24, 16, 8, 0))


def wrk(url: str) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) from one wrk run."""
    out = subprocess.run(
        ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s",
         "--latency", "-s", str(HERE / "random_mac.lua"), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", out).groups()
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        print(f"  wrk reported: {errors.group(0)}", flush=True)
    return rps, p99


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def wait_http(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: the server for {url} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"bench: {url} did not answer within 60 s")


def start(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, *argv],
        env=env,
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        proc.wait(10)


def main() -> int:
    apt_install([pkg for cmd, pkg in (("wrk", "wrk"), ("nginx", "nginx-light")) if not which(cmd)])
    load_before = _load()
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    work = Path(tempfile.mkdtemp(prefix="pureboot-httpbench-"))
    os.chmod(work, 0o755)  # nginx workers read the static file as www-data
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        PUREBOOT_VAR_DIR=str(work / "var"),
        DJANGO_SETTINGS_MODULE="pureboot.settings",
        PYTHONPATH=str(REPO),
        PUREBOOT_LOG_LEVEL="WARNING",
    )
    (work / "var").mkdir()
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    subprocess.run([*me, "seed"], env=env, check=True)
    queries = subprocess.run(
        [*me, "queries"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    # The production configuration (deploy/gunicorn.conf.py) for both apps.
    gunicorn = [
        str(Path(sys.executable).with_name("gunicorn")),
        "--config", str(REPO / "deploy" / "gunicorn.conf.py"), "--workers", WORKERS,
    ]  # fmt: skip
    app_url = f"http://{HOST}:18001/boot/ipxe"
    procs = [start([*gunicorn, "--bind", f"{HOST}:18001", "pureboot.wsgi"], env, work / "app.log")]
    try:
        wait_http(f"{app_url}?mac={MAC}", procs[0])
        body = urllib.request.urlopen(f"{app_url}?mac={MAC}").read()
        (work / "static").mkdir()
        (work / "static" / "ipxe").write_bytes(body)
        bare_env = {**env, "BENCH_BODY_SIZE": str(len(body)), "PYTHONPATH": str(HERE)}
        procs.append(
            start([*gunicorn, "--bind", f"{HOST}:18002", "bare_wsgi"], bare_env, work / "bare.log")
        )
        conf = work / "nginx.conf"
        conf.write_text(
            f"daemon off; worker_processes 1; pid {work}/nginx.pid; error_log {work}/nginx.err;\n"
            f"events {{ worker_connections 1024; }}\n"
            f"http {{ access_log off; server {{ listen {HOST}:18003; root {work}/static; }} }}\n"
        )
        procs.append(start(["nginx", "-c", str(conf)], env, work / "nginx.log"))
        urls = {
            "/boot/ipxe": app_url,
            "bare WSGI": f"http://{HOST}:18002/boot/ipxe",
            "nginx static": f"http://{HOST}:18003/ipxe",
        }
        for url, proc in zip(urls.values(), procs, strict=True):
            wait_http(f"{url}?mac={MAC}", proc)
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in urls}
        for run in range(RUNS):
            for name, url in urls.items():
                figures[name].append(wrk(url))
                rps, p99 = figures[name][-1]
                versus = ""
                if name == "nginx static":  # the run's /boot/ipxe against its bare app
                    (a_rps, a_p99), (b_rps, b_p99) = (
                        figures["/boot/ipxe"][-1],
                        figures["bare WSGI"][-1],
                    )
                    versus = (
                        f"; /boot/ipxe/bare {a_rps / b_rps:.2f}x req/s, {a_p99 / b_p99:.2f}x p99"
                    )
                print(
                    f"run {run + 1}/{RUNS} {name:>13}: {rps:9.0f} req/s  p99 {p99:7.2f} ms{versus}"
                )
    finally:
        for proc in procs:
            stop(proc)
    med = {
        name: (statistics.median(r for r, _ in v), statistics.median(p for _, p in v))
        for name, v in figures.items()
    }
    # Ratios are taken within each run (the servers measured one after the
    # other under the same load), then the median of the runs' ratios.
    ratio = {
        name: (
            statistics.median(
                r / b for (r, _), (b, _) in zip(v, figures["bare WSGI"], strict=True)
            ),
            statistics.median(
                p / b for (_, p), (_, b) in zip(v, figures["bare WSGI"], strict=True)
            ),
        )
        for name, v in figures.items()
    }
    print(
        f"\nHTTP, {NODES} nodes, random MAC per request, {CONNECTIONS} connections, body "
        f"{len(body)} bytes, gunicorn {WORKERS} sync workers (deploy/gunicorn.conf.py), median "
        f"of {RUNS} run(s) of {SECONDS} s (ratios: median of the runs' ratios); load average "
        f"{load_before} before, {_load()} after:\n"
    )
    print("| server | req/s | p99 | req/s vs bare | p99 vs bare |\n|---|---|---|---|---|")
    for name, (rps, p99) in med.items():
        rps_x, p99_x = ratio[name]
        print(f"| {name} | {rps:.0f} | {p99:.2f} ms | {rps_x:.2f}x | {p99_x:.2f}x |")
    rps_x, p99_x = ratio["/boot/ipxe"]
    n_queries = int(re.search(r"queries=(\d+)", queries).group(1))
    print("\n| target | measured | verdict |\n|---|---|---|")
    for text, ok, measured in (
        ("req/s >= 0.5x bare WSGI", rps_x >= 0.5, f"{rps_x:.2f}x"),
        ("p99 <= 1.5x bare WSGI", p99_x <= 1.5, f"{p99_x:.2f}x"),
        ("queries per request <= 4", n_queries <= 4 and "status=200" in queries, queries),
    ):
        print(f"| {text} | {measured} | {'PASS' if ok else 'MISS'} |")
    rmtree(work, ignore_errors=True)  # kept (with the servers' logs) when the bench fails
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["seed"]:
        seed(NODES)
    elif sys.argv[1:] == ["queries"]:
        count_queries()
    else:
        sys.exit(main())
