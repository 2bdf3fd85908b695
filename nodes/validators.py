"""Bounds on free-form JSON that clients store on nodes."""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError

MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_DEPTH = 10


def _walk(value: object, depth: int) -> None:
    if depth > MAX_METADATA_DEPTH:
        raise ValidationError(f"Metadata nests deeper than {MAX_METADATA_DEPTH} levels.")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError("Metadata text may not contain NUL characters.")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or "\x00" in key:
                raise ValidationError("Metadata keys are text without NUL characters.")
            _walk(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _walk(item, depth + 1)
    elif isinstance(value, float) and value != value:  # NaN is not JSON
        raise ValidationError("Metadata numbers must be finite.")


def validate_metadata(value: object) -> None:
    """Metadata is a JSON object of bounded size and depth with no NUL characters.

    PostgreSQL's jsonb refuses NUL in text; checking here turns that into a
    clear 400 instead of a database error.
    """
    if not isinstance(value, dict):
        raise ValidationError("Metadata must be a JSON object.")
    _walk(value, 0)
    try:
        size = len(json.dumps(value, allow_nan=False))
    except ValueError as exc:
        raise ValidationError("Metadata numbers must be finite.") from exc
    if size > MAX_METADATA_BYTES:
        raise ValidationError(f"Metadata is {size} bytes; the limit is {MAX_METADATA_BYTES}.")


def validate_no_control_characters(value: str) -> None:
    """Names and descriptions are text: no control characters but newline and tab."""
    if any((ord(c) < 32 and c not in "\n\t\r") or ord(c) == 127 for c in value or ""):
        raise ValidationError("Must not contain control characters.")
