"""Serving large files: single-range requests, ETags, and nginx X-Accel-Redirect."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, HttpResponse, StreamingHttpResponse

# One range of ASCII digits (\d would take any script's digits); 19 digits
# keep every number inside a 64-bit integer. Anything else is refused (416).
_RANGE_RE = re.compile(r"^bytes=([0-9]{0,19})-([0-9]{0,19})$")
CHUNK = 256 * 1024


def _stream(path: Path, start: int, length: int):
    with path.open("rb") as fh:
        fh.seek(start)
        remaining = length
        while remaining > 0:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


def serve_file(
    request,
    path: Path,
    *,
    relative: str,
    etag: str,
    filename: str,
    accel: bool = True,
    accel_location: str | None = None,
) -> HttpResponse:
    """Answer GET/HEAD for a file with Range, ETag and optional X-Accel-Redirect.

    When ``accel`` and PUREBOOT_ACCEL_REDIRECT is set, nginx is told to send
    ``<accel_location>/<relative>``: ``relative`` is the path below the served
    root, ``accel_location`` the nginx internal location aliased to that root
    (default PUREBOOT_ACCEL_REDIRECT itself, the image root's).
    """
    quoted = f'"{etag}"'
    size = path.stat().st_size
    common = {
        "ETag": quoted,
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
    if request.headers.get("If-None-Match") == quoted:
        response = HttpResponse(status=304)
        response["ETag"] = quoted
        return response
    if accel and settings.PUREBOOT_ACCEL_REDIRECT:
        location = accel_location or settings.PUREBOOT_ACCEL_REDIRECT
        response = HttpResponse(content_type="application/octet-stream")
        response["X-Accel-Redirect"] = location.rstrip("/") + "/" + relative
        for key, value in common.items():
            response[key] = value
        return response
    header = request.headers.get("Range", "")
    if header and request.headers.get("If-Range", quoted) == quoted:
        match = _RANGE_RE.match(header.strip())
        if not match or (not match.group(1) and not match.group(2)):
            return _unsatisfiable(size)
        first, last = match.groups()
        if first:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
        else:  # suffix range: the last N bytes
            start, end = max(size - int(last), 0), size - 1
        if start >= size or start > end:
            return _unsatisfiable(size)
        length = end - start + 1
        response = StreamingHttpResponse(
            [] if request.method == "HEAD" else _stream(path, start, length),
            status=206,
            content_type="application/octet-stream",
        )
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(length)
    else:
        if request.method == "HEAD":
            response = HttpResponse(content_type="application/octet-stream")
        else:
            response = FileResponse(path.open("rb"), content_type="application/octet-stream")
        response["Content-Length"] = str(size)
    for key, value in common.items():
        response[key] = value
    return response


def _unsatisfiable(size: int) -> HttpResponse:
    response = HttpResponse(status=416)
    response["Content-Range"] = f"bytes */{size}"
    return response
