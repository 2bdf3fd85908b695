"""Audit events as the API shows them: every field, all read-only."""

from __future__ import annotations

from rest_framework import serializers

from ..hashing import HASHED_FIELDS
from ..models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        # Everything the hash covers, plus the chain links.
        fields = ("id", *HASHED_FIELDS, "prev_hash", "hash")
        read_only_fields = fields
