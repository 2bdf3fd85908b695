"""gunicorn settings for PureBoot behind nginx (deploy/nginx/pureboot.conf.template).

    gunicorn -c deploy/gunicorn.conf.py pureboot.wsgi

Command-line flags override these (``--bind``, ``--workers``). Sync workers
suit PureBoot: nginx buffers requests and responses, so a slow client never
holds a worker, and the answers PureBoot computes are short. Large files
never pass through a worker (X-Accel-Redirect, see README "Production
set-up"). ``make bench`` runs its WSGI apps with this file.
"""

import multiprocessing
import os

from prometheus_client import multiprocess

bind = "127.0.0.1:8000"
# Two per core: one computes while the other waits on the database.
workers = 2 * multiprocessing.cpu_count()
worker_class = "sync"
backlog = 2048
# A request slower than this is a bug or a stuck database: the worker is
# replaced. Installer reports and the API answer within a few seconds.
timeout = 60
graceful_timeout = 30
# Load the app once in the master and fork the workers from it: a worker that
# is replaced starts in milliseconds instead of importing Django again (which
# costs a loaded core seconds, and the machines waiting on it their answers),
# and the workers share the loaded code's memory (pureboot.wsgi freezes it for
# the garbage collector, so it stays shared). Code changes need a restart.
preload_app = True
# No periodic worker recycling (max_requests): every cache PureBoot keeps is
# bounded, and a recycled worker in a boot storm is a latency spike. `timeout`
# still replaces a stuck worker.
max_requests = 0
# Request limits (gunicorn answers 400 past them, before Django runs).
limit_request_line = 4094
limit_request_fields = 64
limit_request_field_size = 8190
# nginx logs the accesses; gunicorn logs its own errors only.
accesslog = None
# Request lines (access log, error log) with node tokens and passwords redacted.
logger_class = "pureboot.gunicorn_logging.RedactingLogger"
loglevel = "warning"
# nginx on the same host is the only proxy whose forwarded headers count.
forwarded_allow_ips = "127.0.0.1,::1"


# Prometheus (GET /metrics, pureboot.metrics): each worker counts in its own
# memory, so with several workers set PROMETHEUS_MULTIPROC_DIR to a directory
# only the service account writes (e.g. /run/pureboot/prometheus) in the
# service's environment; every worker then writes its values there and a
# scrape of any worker reads them all. It is made and emptied here, when
# gunicorn reads this file at start (before the preloaded app counts
# anything; values left by an earlier run would be counted again), and a dead
# worker's gauges are retired by child_exit.
def _prepare_multiprocess_dir() -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if directory:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.unlink(os.path.join(directory, name))


_prepare_multiprocess_dir()


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip():
        multiprocess.mark_process_dead(worker.pid)
