"""Recognise installer ISOs and extract their boot files, without mounting.

A pure library (no Django models, no root, no loop devices): pycdlib reads
the ISO 9660 / Joliet / Rock Ridge / UDF structures straight from the file.
Debian's netboot.tar.gz (the netboot flavour of its installer, which a
network install needs) is read with tarfile, as a stream.

Public API
    recognise(path, *, max_file_bytes) -> IsoInfo
        Which distribution an ISO (or a Debian netboot.tar.gz) holds, from its
        real directory layout, and where its boot files are.
    extract(path, info, dest_dir, *, max_file_bytes) -> Extraction
        Stream those boot files into dest_dir under fixed, role-based names,
        each written to a temporary name and renamed into place, with its
        SHA-256 computed on the way.
    keep_iso(path, info, dest_dir, *, max_bytes, verified_sha256) -> (Path, str)
        The same for the ISO itself, for installers that download it whole
        at boot (info.keeps_iso: Ubuntu live-server).
    download(url, dest, sha256, *, max_bytes, timeout) -> Path
        Fetch an ISO over http(s), verifying its SHA-256 before it appears.
    redact_url(url) -> str
        The URL with any credentials in it hidden, for messages and records.

Errors all derive from IsoImportError: InvalidIso (not an ISO, truncated,
corrupt; FileTooLarge is a kind of it), UnrecognisedIso (a valid ISO of no
known layout), DownloadError (ChecksumMismatch and DownloadTooLarge are kinds
of it). recognise() lets no other exception escape for a malformed file.

Names found inside an ISO or an archive are only ever used to look things up
inside it; the files written to disk get names from a fixed table of roles.

Modules
    errors    the exception classes
    info      IsoInfo, BootFile, Extraction, dest_filename(), the role table, naming
    reader    the pycdlib-backed, case-insensitive ISO reader
    netboot   Debian's netboot.tar.gz: recognised by its members, streamed out
    detect    one recogniser per installer family, and recognise()
    extract   extract() and the atomic, hashing file writer
    download  download() and redact_url()
"""

from .detect import recognise
from .download import download, redact_url
from .errors import (
    ChecksumMismatch,
    DownloadError,
    DownloadTooLarge,
    FileTooLarge,
    InvalidIso,
    IsoImportError,
    UnrecognisedIso,
)
from .extract import extract, keep_iso
from .info import ARCHES, DEFAULT_MAX_FILE_BYTES, BootFile, Extraction, IsoInfo, dest_filename

__all__ = [
    "ARCHES",
    "DEFAULT_MAX_FILE_BYTES",
    "BootFile",
    "ChecksumMismatch",
    "DownloadError",
    "DownloadTooLarge",
    "Extraction",
    "FileTooLarge",
    "InvalidIso",
    "IsoImportError",
    "IsoInfo",
    "UnrecognisedIso",
    "dest_filename",
    "download",
    "extract",
    "keep_iso",
    "recognise",
    "redact_url",
]
