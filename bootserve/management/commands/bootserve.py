"""Run the TFTP boot server.

The command checks its options, then replaces itself with the daemon's own
process (``python -m bootserve.tftpd``), which does not load Django: see
``bootserve.tftpd`` and ``bootserve.tftp_resolver``.
"""

from __future__ import annotations

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bootserve.tftp import raise_open_file_limit

FILES_BESIDES_TRANSFERS = 64  # listening socket, metrics, database, logs, large-file readers


class Command(BaseCommand):
    help = (
        "Serve boot files over TFTP (read-only) from PUREBOOT_BOOT_ROOT, with per-node "
        "configs rendered by the decision engine. Port 69 needs root; make run uses 6969. "
        "With --metrics-port, Prometheus metrics are served at http://ADDRESS:PORT/metrics."
    )

    def add_arguments(self, parser):
        parser.add_argument("--address", default=settings.PUREBOOT_TFTP_ADDRESS)
        parser.add_argument("--port", type=int, default=settings.PUREBOOT_TFTP_PORT)
        parser.add_argument("--retries", type=int, default=5)
        parser.add_argument("--timeout", type=int, default=5)
        parser.add_argument(
            "--max-transfers",
            type=int,
            default=settings.PUREBOOT_TFTP_MAX_TRANSFERS,
            help="concurrent transfers at most; read requests past it are dropped and the "
            "client resends them (default PUREBOOT_TFTP_MAX_TRANSFERS, 1000)",
        )
        parser.add_argument(
            "--max-per-client",
            type=int,
            default=settings.PUREBOOT_TFTP_MAX_PER_CLIENT,
            help="concurrent transfers of one client address at most; past it its read "
            "requests get an error (default PUREBOOT_TFTP_MAX_PER_CLIENT, 16)",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=settings.PUREBOOT_TFTP_METRICS_PORT,
            help="serve Prometheus metrics on this TCP port (0: off, the default)",
        )
        parser.add_argument(
            "--metrics-address",
            default=settings.PUREBOOT_TFTP_METRICS_ADDRESS,
            help="address of the metrics endpoint (default 127.0.0.1)",
        )

    def handle(
        self,
        *args,
        address,
        port,
        retries,
        timeout,
        max_transfers,
        max_per_client,
        metrics_port,
        metrics_address,
        **options,
    ):
        if not 1 <= port <= 65535:
            raise CommandError(f"--port {port}: use 1-65535")
        if port < 1024 and os.geteuid() != 0:
            raise CommandError(f"port {port} needs root; use --port 6969 (or run as root)")
        if not 0 <= metrics_port <= 65535:
            raise CommandError(f"--metrics-port {metrics_port}: use 1-65535, or 0 for off")
        if not 1 <= timeout <= 255 or not 0 <= retries <= 100:
            raise CommandError("--timeout: use 1-255 seconds; --retries: use 0-100")
        if max_transfers < 1:
            raise CommandError(f"--max-transfers {max_transfers}: use 1 or more")
        if max_per_client < 1:
            raise CommandError(f"--max-per-client {max_per_client}: use 1 or more")
        files = raise_open_file_limit(max_transfers + FILES_BESIDES_TRANSFERS)
        if files < max_transfers + FILES_BESIDES_TRANSFERS:
            bound = max(1, files - FILES_BESIDES_TRANSFERS)
            self.stderr.write(
                f"open files limited to {files} (ulimit -n): at most {bound} transfers "
                f"instead of {max_transfers}"
            )
            max_transfers = bound
        argv = [
            sys.executable, "-m", "bootserve.tftpd",
            "--address", address, "--port", str(port),
            "--boot-root", str(settings.PUREBOOT_BOOT_ROOT),
            "--retries", str(retries), "--timeout", str(timeout),
            "--max-transfers", str(max_transfers), "--max-per-client", str(max_per_client),
            "--rcvbuf", str(settings.PUREBOOT_TFTP_RCVBUF),
            "--cache-mb", str(settings.PUREBOOT_TFTP_CACHE_MB),
            "--helper-idle", str(settings.PUREBOOT_TFTP_HELPER_IDLE_SECONDS),
            "--metrics-port", str(metrics_port), "--metrics-address", metrics_address,
        ]  # fmt: skip
        # The helper process imports the project: it must find it from any directory.
        env = dict(os.environ)
        path = [str(settings.BASE_DIR), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(path)
        env.setdefault("DJANGO_SETTINGS_MODULE", "pureboot.settings")
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, argv, env)
