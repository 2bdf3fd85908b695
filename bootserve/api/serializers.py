"""Boot records as the API shows them: every field, all read-only."""

from __future__ import annotations

from rest_framework import serializers

from ..models import BootRecord


class BootRecordSerializer(serializers.ModelSerializer):
    node_name = serializers.SerializerMethodField(help_text="The node's name now, if any.")

    class Meta:
        model = BootRecord
        fields = (
            "id",
            "created",
            "last_at",
            "protocol",
            "client_address",
            "mac",
            "node",
            "node_name",
            "site",
            "asked",
            "outcome",
            "answer",
            "node_state",
            "repeats",
            "suppressed",
        )
        read_only_fields = fields

    def get_node_name(self, obj: BootRecord) -> str | None:
        return str(obj.node) if obj.node_id else None
