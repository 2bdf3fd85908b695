"""Extracting boot files from an ISO (or Debian's netboot.tar.gz), each written
atomically with its SHA-256."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import FileTooLarge, InvalidIso
from .info import (
    DEFAULT_MAX_FILE_BYTES,
    STAGE2_TREEINFO,
    Extraction,
    IsoInfo,
    dest_filename,
    file_limit,
)
from .netboot import extract_members
from .reader import _CHUNK, _CountingWriter, _Entry, _IsoReader


def extract(
    path: str | os.PathLike[str],
    info: IsoInfo,
    dest_dir: str | os.PathLike[str],
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Extraction:
    """Copy each of info.files into dest_dir under its role's fixed name.

    Each file streams through a SHA-256 into a temporary file beside its
    target and is renamed into place only when complete, so a failure leaves
    no partial file (files finished before it stay). An Anaconda runtime
    image (role ``stage2``) gets the small ``.treeinfo`` (role ``treeinfo``)
    that tells dracut where it is. Returns an Extraction with role -> path
    and role -> SHA-256. Raises InvalidIso if the ISO no longer matches
    ``info`` (file gone, size changed, short read), FileTooLarge, and
    OSError for trouble writing dest_dir. For a netboot archive
    (``info.container == "tar"``) the members are streamed the same way.
    """
    targets: dict[str, str] = {}
    for bf in info.files:
        if bf.role in targets:
            raise ValueError(f"boot file role {bf.role!r} appears twice")
        targets[bf.role] = dest_filename(bf.role, info.arch)
        if bf.size > file_limit(bf.role, max_file_bytes):
            raise FileTooLarge(
                f"boot file {bf.iso_path} ({bf.role}) is {bf.size} bytes,"
                f" over the limit of {file_limit(bf.role, max_file_bytes)}"
            )
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    if info.container == "tar":
        return _extract_archive(path, info, dest, targets, max_file_bytes)
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
            target.parent.mkdir(parents=True, exist_ok=True)

            def fill(out: _CountingWriter, entry: _Entry = entry, size: int = bf.size) -> None:
                iso.copy(entry, out)
                if out.count != size:
                    raise InvalidIso(
                        f"short read: got {out.count} of {size} bytes of {entry.path};"
                        " the ISO is truncated"
                    )

            digests[bf.role] = _write_atomically(target, bf.size, fill)
            paths[bf.role] = target
    if "stage2" in paths:
        target = dest / dest_filename("treeinfo", info.arch)
        text = STAGE2_TREEINFO.encode()

        def write_treeinfo(out: _CountingWriter) -> None:
            out.write(text)

        digests["treeinfo"] = _write_atomically(target, len(text), write_treeinfo)
        paths["treeinfo"] = target
    return Extraction(paths, digests)


def _extract_archive(
    path: str | os.PathLike[str],
    info: IsoInfo,
    dest: Path,
    targets: dict[str, str],
    max_file_bytes: int,
) -> Extraction:
    paths = {bf.role: dest / targets[bf.role] for bf in info.files}
    shown = os.fspath(path)

    def sink(role: str, size: int) -> Callable[[Callable[[_CountingWriter], None]], str]:
        def write(copy: Callable[[_CountingWriter], None]) -> str:
            def fill(out: _CountingWriter) -> None:
                copy(out)
                if out.count != size:
                    raise InvalidIso(
                        f"short read: got {out.count} of {size} bytes of {role} from {shown};"
                        " the archive is truncated"
                    )

            paths[role].parent.mkdir(parents=True, exist_ok=True)
            return _write_atomically(paths[role], size, fill)

        return write

    sinks = {bf.role: sink(bf.role, bf.size) for bf in info.files}
    digests = extract_members(path, info, sinks, max_file_bytes=max_file_bytes)
    return Extraction(paths, digests)


def keep_iso(
    path: str | os.PathLike[str],
    info: IsoInfo,
    dest_dir: str | os.PathLike[str],
    *,
    max_bytes: int,
    verified_sha256: str = "",
) -> tuple[Path, str]:
    """Put the ISO itself into dest_dir under the ``iso`` role's fixed name.

    For installers that download the whole ISO at boot (``info.keeps_iso``).
    The ISO is streamed through a SHA-256 into a temporary file beside the
    target and renamed into place when complete, like the boot files. With
    ``verified_sha256`` the caller vouches that ``path`` is a file it owns
    whose digest download() has just verified: it is renamed into place, not
    copied (an ISO is gigabytes). Returns (path, SHA-256). Raises
    FileTooLarge over ``max_bytes``, InvalidIso when the file cannot be read
    and OSError for trouble writing dest_dir.
    """
    source = Path(path)
    target = Path(dest_dir) / dest_filename("iso", info.arch)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        size = source.stat().st_size
    except OSError as exc:
        raise InvalidIso(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
    if size > max_bytes:
        raise FileTooLarge(f"{os.fspath(path)} is {size} bytes, over the limit of {max_bytes}")
    if verified_sha256:
        os.replace(source, target)
        return target, verified_sha256

    def fill(out: _CountingWriter) -> None:
        with source.open("rb") as fp:
            while chunk := fp.read(_CHUNK):
                out.write(chunk)
        if out.count != size:
            raise InvalidIso(f"{os.fspath(path)} changed while it was copied")

    return target, _write_atomically(target, max_bytes, fill)


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
