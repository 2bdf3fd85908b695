from __future__ import annotations

from rest_framework import serializers

from ..models import ApprovalRequest, Decision


class DecisionSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username")

    class Meta:
        model = Decision
        fields = ("user", "approve", "comment", "at")


class ApprovalRequestSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by.username")
    node_hostname = serializers.CharField(source="node.__str__", read_only=True)
    to_state = serializers.SerializerMethodField()
    approvals = serializers.SerializerMethodField()
    decisions = DecisionSerializer(many=True, read_only=True)

    class Meta:
        model = ApprovalRequest
        fields = (
            "id",
            "action",
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

    def get_to_state(self, obj) -> str:
        from nodes import lifecycle as lc

        return lc.ACTIONS[obj.action].target

    def get_approvals(self, obj) -> int:
        return sum(1 for d in obj.decisions.all() if d.approve)


class DecideSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)
