"""Node API serializers: field lists and validation glue; rules live in services."""

from __future__ import annotations

from rest_framework import serializers

from workflows.models import Workflow

from .. import lifecycle as lc
from ..choices import NodeState
from ..models import NetworkInterface, Node, NodeEvent, Site, Tag, is_pi_with_serial
from ..permissions import accessible_sites
from ..services import MAX_REASON_LENGTH, NEEDS_INTERFACE
from .fields import MacAddressField, SystemUUIDField


class ScopedSiteField(serializers.SlugRelatedField):
    """A site by slug, limited to the sites the requesting user may use."""

    def get_queryset(self):
        request = self.context.get("request")
        return accessible_sites(request.user if request else None)


class SiteSerializer(serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = ("id", "name", "slug", "description", "created_at")


class InterfaceSerializer(serializers.ModelSerializer):
    mac = MacAddressField()
    name = serializers.CharField(max_length=32, required=False, allow_blank=True)
    is_primary = serializers.BooleanField(required=False, default=False)

    class Meta:
        model = NetworkInterface
        fields = ("mac", "name", "is_primary")


class TagListField(serializers.ListField):
    """Tags by name; unknown names are created (tags are free labels)."""

    child = serializers.SlugField(max_length=64)

    def to_representation(self, data):
        return [tag.name for tag in data.all()]


class NodeSerializer(serializers.ModelSerializer):
    site = ScopedSiteField(slug_field="slug", required=False, allow_null=True)
    system_uuid = SystemUUIDField(required=False, allow_null=True)
    interfaces = InterfaceSerializer(many=True, required=False)
    tags = TagListField(required=False, max_length=100)
    workflow = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    workflow_version = serializers.SlugRelatedField(
        slug_field="number",
        read_only=True,
        allow_null=True,
        help_text="The workflow version pinned when it was assigned.",
    )
    metadata = serializers.JSONField(required=False)

    class Meta:
        model = Node
        fields = (
            "id",
            "hostname",
            "site",
            "serial",
            "system_uuid",
            "arch",
            "firmware",
            "vendor",
            "model",
            "tags",
            "interfaces",
            "workflow",
            "workflow_version",
            "metadata",
            "state",
            "state_changed_at",
            "install_attempts",
            "last_seen_at",
            "inventory",
            "inventory_at",
            "created_at",
            "updated_at",
        )
        read_only_fields = (
            "state",
            "state_changed_at",
            "install_attempts",
            "last_seen_at",
            "inventory",
            "inventory_at",
            "created_at",
            "updated_at",
        )
        # Uniqueness is checked by the model's constraints in full_clean().
        validators = []
        extra_kwargs = {
            "hostname": {"validators": []},
            "serial": {"validators": []},
        }

    def validate(self, attrs):
        if (
            self.instance is None
            and not attrs.get("interfaces")
            and not is_pi_with_serial(attrs.get("firmware"), attrs.get("serial"))
        ):
            raise serializers.ValidationError({"interfaces": NEEDS_INTERFACE})
        return attrs


class StateChangeSerializer(serializers.Serializer):
    """``PATCH /nodes/{id}/state``: a target state (or an action name) and a reason."""

    state = serializers.ChoiceField(choices=NodeState.choices, required=False)
    action = serializers.ChoiceField(choices=sorted(lc.ACTIONS), required=False)
    reason = serializers.CharField(
        max_length=MAX_REASON_LENGTH, required=False, allow_blank=True, default=""
    )
    workflow = serializers.SlugRelatedField(
        slug_field="name", queryset=Workflow.objects.all(), required=False
    )
    target = serializers.IntegerField(
        min_value=1,
        max_value=10**18,
        required=False,
        help_text="migrate: the discovered node to move onto (as POST /api/v1/migrate)",
    )
    disk = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="migrate: which of the source's disks moves (smallest, largest, "
        "serial:SERIAL, /dev/NAME; empty with one disk)",
    )

    def validate(self, attrs):
        if not attrs.get("state") and not attrs.get("action"):
            raise serializers.ValidationError(
                {"state": "Give the target state (or the action name)."}
            )
        return attrs


class TransitionSerializer(serializers.Serializer):
    action = serializers.CharField()
    target = serializers.CharField()
    label = serializers.CharField()
    destructive = serializers.BooleanField()
    params = serializers.ListField(child=serializers.CharField())


class NodeEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = NodeEvent
        fields = (
            "id",
            "timestamp",
            "kind",
            "actor",
            "from_state",
            "to_state",
            "message",
            "details",
        )


class TagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ("id", "name", "description")
