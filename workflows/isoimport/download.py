"""Downloading an ISO over http(s), verified against its SHA-256 before it appears."""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from pathlib import Path

from .errors import ChecksumMismatch, DownloadError, DownloadTooLarge
from .extract import _write_atomically
from .reader import _CHUNK, _CountingWriter


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise DownloadError(f"refusing redirect to non-http(s) URL {redact_url(newurl)}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def redact_url(url: str) -> str:
    """``url`` with any user name and password in it replaced by ``***``, for showing."""
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    return urllib.parse.urlunsplit(parts)


def download(
    url: str, dest: str | os.PathLike[str], sha256: str, *, max_bytes: int, timeout: float
) -> Path:
    """Download url (http or https only) to dest, verifying its SHA-256.

    Streams into a temporary file beside dest and renames it into place only
    once the digest matches; on any failure nothing is left at a new name and
    an existing dest is untouched. ``timeout`` bounds the connection and each
    read, in seconds. Raises ValueError for a malformed sha256, DownloadError
    (HTTP errors, unreachable host, non-http(s) URL or redirect),
    DownloadTooLarge (over max_bytes, announced or actual) and
    ChecksumMismatch; OSError for trouble writing dest.
    """
    expected = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    shown = redact_url(url)
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        raise DownloadError(f"only http and https URLs can be downloaded, not {shown}")
    target = Path(dest)
    opener = urllib.request.build_opener(_HttpOnlyRedirects)

    def fill(out: _CountingWriter) -> None:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "PureBoot-isoimport"})
            with opener.open(request, timeout=timeout) as resp:
                announced = resp.headers.get("Content-Length")
                if announced and announced.isdigit() and int(announced) > max_bytes:
                    raise DownloadTooLarge(
                        f"{shown} is {announced} bytes, over the limit of {max_bytes}"
                    )
                while chunk := resp.read(_CHUNK):
                    if out.count + len(chunk) > max_bytes:
                        raise DownloadTooLarge(
                            f"{shown} is larger than the limit of {max_bytes} bytes"
                        )
                    out.write(chunk)
                if announced and announced.isdigit() and out.count != int(announced):
                    raise DownloadError(f"{shown}: got {out.count} of {announced} bytes")
        except urllib.error.HTTPError as exc:
            exc.close()
            raise DownloadError(f"HTTP {exc.code} {exc.reason} for {shown}") from exc
        except urllib.error.URLError as exc:
            raise DownloadError(f"cannot fetch {shown}: {exc.reason}") from exc
        except (HTTPException, TimeoutError, ConnectionError) as exc:
            raise DownloadError(f"cannot fetch {shown}: {type(exc).__name__}: {exc}") from exc
        actual = out.sha256.hexdigest()
        if actual != expected:
            raise ChecksumMismatch(shown, expected, actual)

    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(target, max_bytes, fill)
    return target
