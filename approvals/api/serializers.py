from __future__ import annotations

from rest_framework import serializers

from nodes import lifecycle as lc

from ..kinds import KINDS
from ..models import ApprovalRequest, Decision


class DecisionSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username")

    class Meta:
        model = Decision
        fields = ("user", "approve", "comment", "at")


class ApprovalRequestSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by.username")
    node_hostname = serializers.SerializerMethodField()
    to_state = serializers.SerializerMethodField()
    what = serializers.SerializerMethodField(help_text="What approving will do, in plain words.")
    approvals = serializers.SerializerMethodField()
    decisions = DecisionSerializer(many=True, read_only=True)

    class Meta:
        model = ApprovalRequest
        fields = (
            "id",
            "action",
            "target_type",
            "target_id",
            "target_label",
            "what",
            "node",
            "node_hostname",
            "node_state",
            "to_state",
            "params",
            "reason",
            "requested_by",
            "created_at",
            "expires_at",
            "required_approvals",
            "approvals",
            "status",
            "closed_at",
            "result",
            "decisions",
        )
        read_only_fields = fields

    def get_node_hostname(self, obj) -> str | None:
        return str(obj.node) if obj.node_id else None

    def get_to_state(self, obj) -> str | None:
        action = lc.ACTIONS.get(obj.action) if obj.target_type == "node" else None
        return action.target if action else None

    def get_what(self, obj) -> str:
        return KINDS[obj.action].describe(obj)

    def get_approvals(self, obj) -> int:
        return sum(1 for d in obj.decisions.all() if d.approve)


class DecideSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)
