"""Recognise installer ISOs and extract their boot files, without mounting.

A pure library (no Django models, no root, no loop devices): pycdlib reads
the ISO 9660 / Joliet / Rock Ridge / UDF structures straight from the file.

Public API
    recognise(path, *, max_file_bytes) -> IsoInfo
        Which distribution an ISO holds (from its real directory layout) and
        where its boot files are.
    extract(path, info, dest_dir, *, max_file_bytes) -> Extraction
        Stream those boot files into dest_dir under fixed, role-based names,
        each written to a temporary name and renamed into place, with its
        SHA-256 computed on the way.
    download(url, dest, sha256, *, max_bytes, timeout) -> Path
        Fetch an ISO over http(s), verifying its SHA-256 before it appears.
    redact_url(url) -> str
        The URL with any credentials in it hidden, for messages and records.

Errors all derive from IsoImportError: InvalidIso (not an ISO, truncated,
corrupt; FileTooLarge is a kind of it), UnrecognisedIso (a valid ISO of no
known layout), DownloadError (ChecksumMismatch and DownloadTooLarge are kinds
of it). recognise() lets no other exception escape for a malformed file.

Names found inside an ISO are only ever used to look things up inside that
ISO; the files written to disk get names from a fixed table of roles.

Modules
    errors    the exception classes
    info      IsoInfo, BootFile, Extraction, dest_filename() and the role table
    reader    the pycdlib-backed, case-insensitive ISO reader
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
from .extract import extract
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
    "recognise",
    "redact_url",
]
