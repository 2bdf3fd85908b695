"""The TFTP daemon's database side: a helper process that decides configs.

Started by ``bootserve.tftp_resolver.HelperResolver`` as
``python -m bootserve.tftp_db FD IDLE``: it sets Django up, then answers each
request (a JSON object: id, path, peer) arriving on the Unix socket ``FD`` with
what ``bootserve.tftp_files.resolve`` decides from the current database state:
a rendered config, a boot-root file or nothing. A message ``{"record": {...}}``
is a finished transfer's report: written by ``bootserve.tftp_files.record``,
not answered. Requests are answered one at a
time, in order; each starts and ends like a web request does
(``close_old_connections``). It exits when the daemon closes the socket, or
after IDLE seconds without a request (the daemon starts another when needed).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys

log = logging.getLogger("pureboot.tftp")


def serve(sock: socket.socket, idle: float) -> None:
    from django.db import close_old_connections

    from bootserve.tftp_files import record, resolve
    from bootserve.tftp_resolver import MAX_MESSAGE, encode_answer

    sock.settimeout(idle)
    while True:
        try:
            message = sock.recv(MAX_MESSAGE)
        except TimeoutError:
            return  # idle
        if not message:
            return  # the daemon is gone
        try:
            request = json.loads(message)
            if isinstance(request, dict) and "record" in request:
                close_old_connections()
                record(request["record"])  # never raises; nothing goes back
                close_old_connections()
                continue
            request_id, path = int(request["id"]), str(request["path"])
            peer = (str(request["peer"][0]), int(request["peer"][1]))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("tftp: unreadable request to the database helper: %s", exc)
            continue
        close_old_connections()
        try:
            result = resolve(path, peer)
        except Exception:
            log.exception("tftp: resolving %s for %s failed", path, peer[0])
            result = None
        finally:
            close_old_connections()
        try:
            sock.send(encode_answer(request_id, result))
        except OSError as exc:
            if isinstance(exc, BrokenPipeError | ConnectionResetError):
                return
            log.error("tftp: answer for %s not sent: %s", path, exc)
            sock.send(encode_answer(request_id, None))


def main(argv: list[str]) -> int:
    fd, idle = int(argv[0]), float(argv[1])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pureboot.settings")
    import django

    django.setup()
    with socket.socket(fileno=fd) as sock:
        serve(sock, idle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
