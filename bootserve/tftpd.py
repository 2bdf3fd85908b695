"""The TFTP daemon's process: the event loop, without Django.

``manage.py bootserve`` checks its options against the settings and then
replaces itself (``exec``) with ``python -m bootserve.tftpd`` and explicit
options, so the process serving transfers holds fbtftp, the loop and the file
cache (about 20 MB) instead of Django and every app (about 60 MB more).
Decisions that need the database are made by a helper process started on
demand (see ``bootserve.tftp_resolver``). Not meant to be run by hand: the
command documents the options and their settings.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .tftp import BootServer
from .tftp_content import ContentCache
from .tftp_metrics import TftpMetrics
from .tftp_resolver import HelperResolver


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bootserve.tftpd")
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--boot-root", type=Path, required=True)
    parser.add_argument("--retries", type=int, default=5)
    parser.add_argument("--timeout", type=int, default=5)
    parser.add_argument("--max-transfers", type=int, default=1000)
    parser.add_argument("--max-per-client", type=int, default=16)
    parser.add_argument("--rcvbuf", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--cache-mb", type=int, default=64)
    parser.add_argument("--helper-idle", type=float, default=600.0)
    parser.add_argument("--metrics-port", type=int, default=0)
    parser.add_argument("--metrics-address", default="127.0.0.1")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    options = parse(argv)
    logging.basicConfig(
        level=options.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("pureboot.tftp").setLevel(logging.INFO)
    metrics = TftpMetrics()
    resolver = HelperResolver(
        options.boot_root, idle=options.helper_idle, on_decision=metrics.count_decision
    )
    try:
        server = BootServer(
            options.address,
            options.port,
            resolver,
            retries=options.retries,
            timeout=options.timeout,
            max_transfers=options.max_transfers,
            max_per_client=options.max_per_client,
            rcvbuf=options.rcvbuf,
            cache=ContentCache(budget=options.cache_mb * 1024 * 1024),
            metrics=metrics,
        )
    except (OSError, ValueError) as exc:
        print(
            f"bootserve: cannot listen on {options.address}:{options.port}: {exc}", file=sys.stderr
        )
        return 1
    print(
        f"TFTP on {options.address}:{options.port}, boot root {options.boot_root}, at most "
        f"{options.max_transfers} transfers ({options.max_per_client} per address), "
        f"receive buffer {server.rcvbuf} bytes",
        flush=True,
    )
    if options.metrics_port:
        try:
            host, bound = server.serve_metrics(options.metrics_address, options.metrics_port)
        except (OSError, ValueError) as exc:
            print(
                f"bootserve: cannot serve metrics on {options.metrics_address}:"
                f"{options.metrics_port}: {exc}",
                file=sys.stderr,
            )
            return 1
        shown = f"[{host}]" if ":" in host else host
        print(f"metrics on http://{shown}:{bound}/metrics", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
