"""Serializer fields that normalise machine identifiers on the way in."""

from rest_framework import serializers

from ..identifiers import normalize_mac, normalize_uuid


class MacAddressField(serializers.CharField):
    """Accepts the common MAC spellings; represents lower-case colon form."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 32)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        try:
            return normalize_mac(text)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class SystemUUIDField(serializers.CharField):
    """Accepts braces, upper case and missing hyphens; represents canonical form."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        try:
            return normalize_uuid(text)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def to_representation(self, value):
        return str(value) if value else None
