"""Extracting boot files from an ISO, each written atomically with its SHA-256."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import FileTooLarge, InvalidIso
from .info import DEFAULT_MAX_FILE_BYTES, Extraction, IsoInfo, dest_filename
from .reader import _CountingWriter, _Entry, _IsoReader


def extract(
    path: str | os.PathLike[str],
    info: IsoInfo,
    dest_dir: str | os.PathLike[str],
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Extraction:
    """Copy each of info.files into dest_dir under its role's fixed name.

    Each file streams through a SHA-256 into a temporary file in dest_dir and
    is renamed into place only when complete, so a failure leaves no partial
    file (files finished before it stay). Returns an Extraction with
    role -> path and role -> SHA-256. Raises InvalidIso if the ISO no longer
    matches ``info`` (file gone, size changed, short read), FileTooLarge, and
    OSError for trouble writing dest_dir.
    """
    targets: dict[str, str] = {}
    for bf in info.files:
        if bf.role in targets:
            raise ValueError(f"boot file role {bf.role!r} appears twice")
        targets[bf.role] = dest_filename(bf.role, info.arch)
        if bf.size > max_file_bytes:
            raise FileTooLarge(
                f"boot file {bf.iso_path} ({bf.role}) is {bf.size} bytes,"
                f" over the limit of {max_file_bytes}"
            )
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    digests: dict[str, str] = {}
    with _IsoReader(path) as iso:
        for bf in info.files:
            entry = iso.find_file(bf.iso_path)
            if entry is None or entry.size != bf.size:
                raise InvalidIso(
                    f"{bf.iso_path} is {'missing' if entry is None else f'{entry.size} bytes'}"
                    f" in {os.fspath(path)}, expected {bf.size} bytes; was the ISO replaced?"
                )
            target = dest / targets[bf.role]

            def fill(out: _CountingWriter, entry: _Entry = entry, size: int = bf.size) -> None:
                iso.copy(entry, out)
                if out.count != size:
                    raise InvalidIso(
                        f"short read: got {out.count} of {size} bytes of {entry.path};"
                        " the ISO is truncated"
                    )

            digests[bf.role] = _write_atomically(target, bf.size, fill)
            paths[bf.role] = target
    return Extraction(paths, digests)


def _write_atomically(target: Path, limit: int, fill: Callable[[_CountingWriter], None]) -> str:
    """Let ``fill`` write (at most ``limit`` bytes) into a temporary file beside
    ``target``, then rename it into place; return its SHA-256. If ``fill``
    raises, the temporary file is removed and ``target`` is left as it was."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fp:
            out = _CountingWriter(fp, limit)
            fill(out)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return out.sha256.hexdigest()
