"""Boot records as the API shows them: every field, all read-only."""

from __future__ import annotations

from rest_framework import serializers

from ..models import BootRecord


class BootRecordSerializer(serializers.ModelSerializer):
    node = serializers.SerializerMethodField(
        help_text="The node's id, while the caller may see the node (it may have moved since)."
    )
    node_name = serializers.SerializerMethodField(
        help_text="The node's name now, if any, and only while the caller may see the node."
    )

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

    def get_node(self, obj: BootRecord) -> int | None:
        return obj.node_id if getattr(obj, "node_shown", False) else None

    def get_node_name(self, obj: BootRecord) -> str | None:
        # node_shown: records.with_node_shown, which the view's queryset carries.
        return str(obj.node) if getattr(obj, "node_shown", False) else None
