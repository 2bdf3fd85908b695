"""The bare WSGI app of the HTTP benchmark: a fixed body of BENCH_BODY_SIZE bytes."""

import os

BODY = b"x" * int(os.environ.get("BENCH_BODY_SIZE", "512"))
HEADERS = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", str(len(BODY))),
    ("Cache-Control", "no-store"),
]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
