"""Read-only access to an ISO's files through pycdlib, and the bounded, hashing sink.

pycdlib reads the ISO 9660 / Joliet / Rock Ridge / UDF structures straight
from the file; every pycdlib call runs inside _parsing(), which turns any
exception it raises on malformed input into InvalidIso.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import pycdlib

from .errors import FileTooLarge, InvalidIso, IsoImportError

_MAX_TEXT_BYTES = 1024 * 1024  # .disk/info, .treeinfo and friends are a few KiB
_CHUNK = 1024 * 1024
_SECTOR = 2048
_MIN_ISO_BYTES = 18 * _SECTOR  # 16 system-area sectors, a PVD and a terminator


@contextmanager
def _parsing(what: str) -> Iterator[None]:
    # pycdlib parses untrusted bytes and, on malformed input, raises not only
    # PyCdlibException but also struct.error, IndexError, KeyError,
    # UnicodeDecodeError... Only pycdlib calls run inside this block, so any
    # exception here is a fact about the file, not a bug of ours.
    try:
        yield
    except IsoImportError:
        raise
    except Exception as exc:
        raise InvalidIso(f"{what}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class _Entry:
    path: str  # the real path in the reader's namespace, as pycdlib wants it
    is_dir: bool
    size: int


_NS_KEYWORDS = {"rr": "rr_path", "udf": "udf_path", "joliet": "joliet_path", "iso9660": "iso_path"}
_VERSION_SUFFIX = re.compile(r";\d*$")


class _IsoReader:
    """Case-insensitive, read-only view of one namespace of an ISO.

    The namespace is the one with real file names: Rock Ridge, else UDF
    (Windows media), else Joliet, else plain ISO 9660 (8.3 upper-case names,
    matched without their ``;1`` version and trailing dot).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._iso = pycdlib.PyCdlib()
        self._dirs: dict[str, dict[str, _Entry]] = {}
        self._fp: BinaryIO | None = None
        try:
            st = os.stat(path)
        except OSError as exc:
            raise InvalidIso(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise InvalidIso(f"{os.fspath(path)} is not a regular file")
        if st.st_size < _MIN_ISO_BYTES:
            raise InvalidIso(
                f"{os.fspath(path)} is {st.st_size} bytes, smaller than the smallest ISO 9660"
                f" image ({_MIN_ISO_BYTES} bytes)"
            )
        try:
            self._fp = open(path, "rb")  # noqa: SIM115 - closed by close()
            with _parsing("not a readable ISO 9660 image"):
                self._iso.open_fp(self._fp)
                declared = self._iso.pvd.space_size * self._iso.logical_block_size
                self.volume_id = self._iso.pvd.volume_identifier.decode("ascii", "replace")
                if self._iso.has_rock_ridge():
                    self.namespace = "rr"
                elif self._iso.has_udf():
                    self.namespace = "udf"
                elif self._iso.has_joliet():
                    self.namespace = "joliet"
                else:
                    self.namespace = "iso9660"
            self.volume_id = self.volume_id.strip(" \x00")
            if st.st_size < declared:
                raise InvalidIso(
                    f"truncated: the file has {st.st_size} bytes but its volume descriptor"
                    f" declares {declared}"
                )
        except OSError as exc:
            self.close()
            raise InvalidIso(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
        except BaseException:
            self.close()
            raise
        self._kw = _NS_KEYWORDS[self.namespace]

    def close(self) -> None:
        if self._fp is not None:
            self._fp.close()
            self._fp = None

    def __enter__(self) -> _IsoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _name(self, child: Any) -> str | None:
        if child is None or child.is_dot() or child.is_dotdot() or child.is_symlink():
            return None
        if self.namespace == "rr":
            rr = child.rock_ridge
            if rr is None:
                return None
            name = rr.name().decode("utf-8", "replace")
        elif self.namespace == "udf":
            ident = child.file_ident
            encoding = ident.encoding if ident is not None else "utf-8"
            name = child.file_identifier().decode(encoding, "replace")
        elif self.namespace == "joliet":
            name = child.file_identifier().decode("utf-16_be", "replace")
        else:
            name = child.file_identifier().decode("latin-1")
        if not name or "/" in name or "\x00" in name or name in (".", ".."):
            return None
        return name

    def _fold(self, name: str) -> str:
        if self.namespace in ("iso9660", "joliet"):
            name = _VERSION_SUFFIX.sub("", name)
        if self.namespace == "iso9660":
            name = name.rstrip(".")
        return name.casefold()

    def _children(self, dir_path: str) -> dict[str, _Entry]:
        listing = self._dirs.get(dir_path)
        if listing is None:
            listing = {}
            with _parsing(f"reading directory {dir_path}"):
                for child in self._iso.list_children(**{self._kw: dir_path}):
                    name = self._name(child)
                    if name is None:
                        continue
                    listing.setdefault(
                        self._fold(name),
                        _Entry(
                            posixpath.join(dir_path, name), child.is_dir(), child.get_data_length()
                        ),
                    )
            self._dirs[dir_path] = listing
        return listing

    def find(self, path: str) -> _Entry | None:
        """The entry at ``path`` (case-insensitive), or None."""
        entry = _Entry("/", True, 0)
        for part in path.strip("/").split("/"):
            if not part:
                continue
            if not entry.is_dir:
                return None
            entry = self._children(entry.path).get(self._fold(part))
            if entry is None:
                return None
        return entry

    def find_file(self, path: str) -> _Entry | None:
        entry = self.find(path)
        return entry if entry is not None and not entry.is_dir else None

    def exists(self, path: str) -> bool:
        return self.find_file(path) is not None

    def copy(self, entry: _Entry, out: _CountingWriter) -> None:
        """Stream one file into ``out``; errors of ``out`` itself are re-raised as they are."""
        try:
            with _parsing(f"reading {entry.path}"):
                self._iso.get_file_from_iso_fp(out, blocksize=_CHUNK, **{self._kw: entry.path})
        except InvalidIso:
            if out.error is not None:
                raise out.error from None
            raise

    def read_text(self, path: str) -> str | None:
        """A small text file's content, or None when absent."""
        entry = self.find_file(path)
        if entry is None:
            return None
        if entry.size > _MAX_TEXT_BYTES:
            raise InvalidIso(f"{entry.path} is {entry.size} bytes; expected a small text file")
        out = _CountingWriter(None, _MAX_TEXT_BYTES)
        self.copy(entry, out)
        return bytes(out.buffer).decode("utf-8", "replace")


class _CountingWriter:
    """File-like sink that hashes, counts and bounds what pycdlib writes into it."""

    def __init__(self, fp: BinaryIO | None, limit: int) -> None:
        self._fp = fp
        self._limit = limit
        self.buffer = bytearray()
        self.count = 0
        self.sha256 = hashlib.sha256()
        self.error: BaseException | None = None

    def write(self, data: bytes) -> int:
        try:
            self.count += len(data)
            if self.count > self._limit:
                raise FileTooLarge(f"file data exceeds the limit of {self._limit} bytes")
            self.sha256.update(data)
            if self._fp is None:
                self.buffer += data
            else:
                self._fp.write(data)
        except BaseException as exc:
            self.error = exc
            raise
        return len(data)
