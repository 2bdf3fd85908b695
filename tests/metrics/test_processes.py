"""/metrics of the real processes: gunicorn (several workers), a Celery worker, the boot daemon.

Each is started on the shared SQLite file, driven by real actions (boot
requests over HTTP and TFTP, a lifecycle transition, tasks through a real
Redis), scraped over HTTP and parsed with prometheus-client's parser. The
Grafana dashboard and the alert rules may name only metrics these expose.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from celery import Celery

from tests.bootserve import tftpclient
from tests.processes import stop

from .processes import (
    BASE_DIR,
    answers,
    base_env,
    free_port,
    manage,
    require,
    wait_for,
)
from .scrape import families, get, names, value

# Nodes the tests act on, made in the shared database before the processes start.
PENDING_MAC = "52:54:00:5e:00:01"  # assigned a workflow: its boot starts an install
STUCK_MAC = "52:54:00:5e:00:02"  # installing for hours: the worker's task fails it
SETUP = f"""
from datetime import timedelta
from django.utils import timezone
from nodes import services
from nodes.models import Node
from tests.factories import make_node, make_workflow
pending = make_node(macs=["{PENDING_MAC}"])
services.perform(pending.pk, "assign", services.SYSTEM, workflow=make_workflow())
stuck = make_node("installing", macs=["{STUCK_MAC}"])
Node.objects.filter(pk=stuck.pk).update(state_changed_at=timezone.now() - timedelta(hours=9))
"""


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> dict:
    """One host's shared state: a migrated SQLite database, a boot root, a DHCP hosts dir."""
    top = tmp_path_factory.mktemp("metrics-host")
    var = top / "var"
    (top / "boot").mkdir()
    (top / "boot" / "undionly.kpxe").write_bytes(b"\x55" * 3000)
    (top / "hosts").mkdir()
    env = base_env(var)
    env.update(
        PUREBOOT_BOOT_ROOT=str(top / "boot"),
        PUREBOOT_DHCP_HOSTSDIR=str(top / "hosts"),
        PUREBOOT_TFTP_HELPER_IDLE_SECONDS="30",
    )
    manage(env, "migrate", "-v", "0")
    manage(env, "shell", "-c", SETUP)
    return {"top": top, "env": env}


@pytest.fixture(scope="module")
def redis_url(host):
    server = require("redis-server", "redis-server")
    port = free_port()
    log = host["top"] / "redis.log"
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(host["top"]), "--logfile", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        wait_for(ready, 20, "redis-server", log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(process)


@pytest.fixture(scope="module")
def worker(host, redis_url):
    """``celery worker`` (solo pool) with PUREBOOT_WORKER_METRICS_PORT; its metrics URL."""
    port = free_port()
    env = dict(host["env"], REDIS_URL=redis_url, PUREBOOT_WORKER_METRICS_PORT=str(port))
    log = host["top"] / "worker.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "pureboot", "worker", "--pool=solo",
             "--loglevel=INFO", "--include", "metrics_tasks", "--without-mingle",
             "--without-gossip", "-n", f"metrics-{port}@localhost"],
            cwd=BASE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: answers(url) and b"ready." in log.read_bytes(), 60, "worker", log)
        yield {"url": url, "log": log, "broker": redis_url}
    finally:
        stop(process, timeout=20)


@pytest.fixture(scope="module")
def web(host, redis_url):
    """gunicorn with deploy/gunicorn.conf.py, two workers, multiprocess metrics; its base URL."""
    port = free_port()
    prom_dir = host["top"] / "prometheus"
    env = dict(host["env"], REDIS_URL=redis_url, PROMETHEUS_MULTIPROC_DIR=str(prom_dir))
    log = host["top"] / "gunicorn.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(BASE_DIR / "deploy" / "gunicorn.conf.py"),
             "--bind", f"127.0.0.1:{port}", "--workers", "2", "pureboot.wsgi"],
            cwd=BASE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(f"{url}/metrics"), 60, "gunicorn", log)
        yield {"url": url, "log": log, "prom_dir": prom_dir}
    finally:
        stop(process, timeout=20)


@pytest.fixture(scope="module")
def daemon(host):
    """``manage.py bootserve`` with a metrics port; its TFTP port and metrics URL."""
    tftp_port = free_port(socket.SOCK_DGRAM)
    metrics_port = free_port()
    log = host["top"] / "bootserve.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, str(BASE_DIR / "manage.py"), "bootserve", "--address", "127.0.0.1",
             "--port", str(tftp_port), "--metrics-port", str(metrics_port)],
            cwd=BASE_DIR, env=host["env"], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        wait_for(lambda: answers(url), 60, "bootserve", log)
        yield {"port": tftp_port, "url": url, "log": log}
    finally:
        stop(process)


def boot(web: dict, mac: str) -> str:
    with urllib.request.urlopen(f"{web['url']}/boot/ipxe?mac={mac}", timeout=30) as r:  # noqa: S310
        return r.read().decode()


def decisions(text: str, protocol: str) -> float:
    family = families(text)["pureboot_boot_decisions"]
    return sum(
        s.value
        for s in family.samples
        if s.name == "pureboot_boot_decisions_total" and s.labels["protocol"] == protocol
    )


def test_gunicorn_workers_sum_their_boot_decisions_and_transitions(web):
    before = get(f"{web['url']}/metrics")
    script = boot(web, PENDING_MAC)  # pending with a workflow: the install starts
    assert "#!ipxe" in script
    for i in range(6):  # new machines: registered and told to wait, by whichever worker
        boot(web, f"52:54:00:5e:01:{i:02x}")
    for i in range(6):  # the same machines again: the fast path answers
        boot(web, f"52:54:00:5e:01:{i:02x}")
    # Several scrapes land on different workers; each reads every worker's values.
    for _ in range(4):
        after = get(f"{web['url']}/metrics")
        assert decisions(after, "ipxe") - decisions(before, "ipxe") == 13
        assert (
            value(after, "pureboot_boot_decisions_total", protocol="ipxe", outcome="wait")
            - (value(before, "pureboot_boot_decisions_total", protocol="ipxe", outcome="wait"))
            == 12
        )
        started = "pureboot_node_transitions_total"
        assert value(after, started, from_state="pending", to_state="installing") == 1
        assert value(after, "pureboot_installs_started_total") == 1
    assert any(web["prom_dir"].glob("*.db")), "multiprocess mode wrote no files"
    # Read from the database: the node whose install started, the six new ones.
    assert value(after, "pureboot_nodes", state="installing", site="") >= 1
    assert value(after, "pureboot_nodes", state="discovered", site="") == 6


def test_the_worker_counts_tasks_and_the_transitions_it_performs(worker):
    app = Celery(broker=worker["broker"])
    before = get(worker["url"])
    for name in (
        "pureboot_tests.metrics_ok",
        "pureboot_tests.metrics_fail",
        "pureboot_tests.metrics_retry_once",
        "nodes.fail_stuck_installs",  # a real task: fails the stuck node
    ):
        app.send_task(name)

    def moved(text: str, sample: str, **labels) -> float:
        return value(text, sample, **labels) - value(before, sample, **labels)

    def settled() -> bool:
        text = get(worker["url"])
        return (
            moved(text, "pureboot_celery_task_successes_total", task="nodes.fail_stuck_installs")
            == 1
            and moved(
                text,
                "pureboot_celery_task_successes_total",
                task="pureboot_tests.metrics_retry_once",
            )
            == 1
        )

    deadline = time.monotonic() + 30
    while not settled():
        assert time.monotonic() < deadline, worker["log"].read_text()[-3000:]
        time.sleep(0.3)
    after = get(worker["url"])
    ok, fail, retry = (
        "pureboot_tests.metrics_ok",
        "pureboot_tests.metrics_fail",
        "pureboot_tests.metrics_retry_once",
    )
    assert moved(after, "pureboot_celery_task_successes_total", task=ok) == 1
    assert moved(after, "pureboot_celery_task_failures_total", task=fail) == 1
    assert moved(after, "pureboot_celery_task_successes_total", task=fail) == 0
    assert moved(after, "pureboot_celery_task_retries_total", task=retry) == 1
    # Every registered task's series is there from the start, at zero.
    assert value(after, "pureboot_celery_task_failures_total", task="agent.fail_lost_jobs") == 0
    assert "agent.fail_lost_jobs" in {
        s.labels.get("task") for s in families(after)["pureboot_celery_task_failures"].samples
    }
    # The stuck node: a transition, a failed install, and the DHCP sync it queued.
    assert moved(after, "pureboot_node_transitions_total", from_state="installing",
                 to_state="failed") == 1  # fmt: skip
    assert moved(after, "pureboot_installs_failed_total") == 1
    assert moved(after, "pureboot_install_duration_seconds_count", result="failed") == 1
    assert moved(after, "pureboot_install_duration_seconds_sum", result="failed") >= 9 * 3600
    wait_for(
        lambda: moved(get(worker["url"]), "pureboot_dhcp_host_syncs_total", scope="node") >= 1,
        20,
        "the DHCP host sync",
        worker["log"],
    )
    assert value(get(worker["url"]), "pureboot_dhcp_host_files_written_total") >= 1


def start_worker(host, redis_url, queue: str, port: int, *extra_env: tuple[str, str]):
    env = dict(host["env"], REDIS_URL=redis_url, PUREBOOT_WORKER_METRICS_PORT=str(port))
    env.update(extra_env)
    log = host["top"] / f"worker-{queue}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "pureboot", "worker", "--pool=prefork",
             "--concurrency=2", "--loglevel=INFO", "--include", "metrics_tasks", "-Q", queue,
             "--without-mingle", "--without-gossip", "-n", f"{queue}-{port}@localhost"],
            cwd=BASE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return process, log


def test_a_prefork_worker_sums_its_children_in_multiprocess_mode(host, redis_url):
    port = free_port()
    prom_dir = host["top"] / "worker-prometheus"
    prom_dir.mkdir()
    process, log = start_worker(
        host, redis_url, "metrics_prefork", port, ("PROMETHEUS_MULTIPROC_DIR", str(prom_dir))
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: answers(url) and b"ready." in log.read_bytes(), 60, "worker", log)
        app = Celery(broker=redis_url)
        for _ in range(6):
            app.send_task("pureboot_tests.metrics_ok", queue="metrics_prefork")
        done = "pureboot_celery_task_successes_total"
        wait_for(
            lambda: value(get(url), done, task="pureboot_tests.metrics_ok") == 6,
            30,
            "six tasks counted across the pool's children",
            log,
        )
    finally:
        stop(process, timeout=20)


def test_a_prefork_worker_without_the_multiprocess_dir_serves_no_metrics(host, redis_url):
    """Its children's counts would never reach the main process: it says so instead."""
    port = free_port()
    process, log = start_worker(host, redis_url, "metrics_unused", port)
    try:
        wait_for(lambda: b"ready." in log.read_bytes(), 60, "worker", log)
        assert b"set PROMETHEUS_MULTIPROC_DIR" in log.read_bytes()
        assert not answers(f"http://127.0.0.1:{port}/metrics")
    finally:
        stop(process, timeout=20)


def test_the_boot_daemon_counts_tftp_transfers_and_decisions(daemon):
    before = get(daemon["url"])
    assert tftpclient.read("127.0.0.1", daemon["port"], "undionly.kpxe")[0] == b"\x55" * 3000
    config = tftpclient.read("127.0.0.1", daemon["port"], "pxelinux.cfg/01-52-54-00-5e-02-01")[0]
    assert config  # an unknown machine: registered, told to wait (a rendered config)

    def moved(sample: str, **labels) -> float:
        return value(after, sample, **labels) - value(before, sample, **labels)

    # A transfer is counted when the daemon sees the client's last ACK.
    deadline = time.monotonic() + 10
    while True:
        after = get(daemon["url"])
        if moved("pureboot_tftp_transfers_completed_total", kind="rendered") or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.1)

    assert moved("pureboot_tftp_transfers_completed_total", kind="static") == 1
    assert moved("pureboot_tftp_transfers_completed_total", kind="rendered") == 1
    assert moved("pureboot_tftp_sent_bytes_total", kind="static") == 3000
    assert moved("pureboot_boot_decisions_total", protocol="pxelinux", outcome="wait") == 1


# --- the dashboard and the alert rules name only metrics that exist -------------------

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset", "inf", "nan"}  # fmt: skip
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions and keywords left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings (label values, templates)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    found = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word, rest = match.group(), expr[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue  # a function, an aggregation, a keyword
        if re.fullmatch(r"\d*e\d*", word):
            continue
        found.add(word)
    return found


def test_metric_names_are_read_from_promql():
    expr = 'sum by (le, view) (rate(x_bucket{status=~"5.."}[5m])) / on(job) up * 3e2'
    assert metric_names(expr) == {"x_bucket", "up"}


def expressions() -> dict[str, list[str]]:
    alerts = yaml.safe_load((BASE_DIR / "deploy/prometheus/alerts.yml").read_text())
    rules = [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    dashboard = json.loads((BASE_DIR / "deploy/grafana/pureboot.json").read_text())
    targets = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return {"alerts.yml": rules, "pureboot.json": targets}


def test_every_metric_the_dashboard_and_alerts_name_is_exposed(web, worker, daemon):
    boot(web, "52:54:00:5e:03:01")  # a request, so django-prometheus' series exist
    exposed = set()
    for url in (f"{web['url']}/metrics", worker["url"], daemon["url"]):
        exposed |= names(get(url))
    exposed.add("up")  # Prometheus' own, per target
    missing = {}
    for source, exprs in expressions().items():
        assert exprs, source
        for expr in exprs:
            for name in metric_names(expr):
                base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), "")
                if name not in exposed and f"{base}_bucket" not in exposed:
                    missing.setdefault(source, set()).add(name)
    assert not missing, missing


def test_the_alert_rules_and_the_scrape_config_pass_promtool(tmp_path):
    promtool = require("promtool", "prometheus")
    rules = BASE_DIR / "deploy/prometheus/alerts.yml"
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout + done.stderr
    # The example configuration, with its token file where the check can find one.
    config = (BASE_DIR / "deploy/prometheus/prometheus.yml").read_text()
    token = tmp_path / "token"
    token.write_text("x" * 40)
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/pureboot-metrics-token", str(token))
    )
    (tmp_path / "alerts.yml").write_text(rules.read_text())
    done = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert Path(tmp_path / "alerts.yml").exists()
