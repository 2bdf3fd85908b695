"""Audit events as the API shows them: every field, all read-only."""

from __future__ import annotations

from rest_framework import serializers

from ..models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = (
            "id",
            "seq",
            "timestamp",
            "actor",
            "action",
            "object_type",
            "object_id",
            "changes",
            "message",
            "details",
            "source_ip",
            "request_id",
            "prev_hash",
            "hash",
        )
        read_only_fields = fields
