"""Exceptions raised by workflows.isoimport; all derive from IsoImportError."""

from __future__ import annotations


class IsoImportError(Exception):
    """Base class of everything this module raises on purpose."""


class InvalidIso(IsoImportError):
    """The file is not a readable ISO image (missing, not ISO 9660, truncated, corrupt)."""


class FileTooLarge(InvalidIso):
    """A file inside the ISO is larger than the caller's max_file_bytes."""


class UnrecognisedIso(IsoImportError):
    """A valid ISO whose layout matches no supported installer."""


class DownloadError(IsoImportError):
    """An ISO could not be downloaded (HTTP error, unreachable, refused URL)."""


class DownloadTooLarge(DownloadError):
    """The download is, or announced itself as, larger than max_bytes."""


class ChecksumMismatch(DownloadError):
    """The downloaded bytes do not have the expected SHA-256; nothing was kept."""

    def __init__(self, url: str, expected: str, actual: str) -> None:
        super().__init__(f"SHA-256 mismatch for {url}: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual
