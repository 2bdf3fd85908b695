"""What the agent sends and what people read: field lists and bounds, no rules."""

from __future__ import annotations

from rest_framework import serializers

from nodes.lifecycle import DEPROVISION_AFTER, WIPE_CATEGORIES
from nodes.models import Migration

from ..models import AgentJob, WipeCertificate

TRANSPORTS = ("nvme", "sata", "ata", "sas", "scsi", "virtio", "mmc", "usb", "unknown")
TEXT = {"max_length": 256, "allow_blank": True, "required": False}


class AtaSecuritySerializer(serializers.Serializer):
    supported = serializers.BooleanField(required=False)
    enabled = serializers.BooleanField(required=False)
    locked = serializers.BooleanField(required=False)
    frozen = serializers.BooleanField(required=False)
    enhanced = serializers.BooleanField(required=False)


class CapabilitiesSerializer(serializers.Serializer):
    nvme_sanitize = serializers.ListField(
        child=serializers.ChoiceField(("crypto", "block", "overwrite")),
        required=False,
        max_length=3,
    )
    nvme_format = serializers.BooleanField(required=False)
    nvme_format_crypto = serializers.BooleanField(required=False)
    ata_security = AtaSecuritySerializer(required=False)
    scsi_sanitize = serializers.BooleanField(required=False)
    secure_discard = serializers.BooleanField(required=False)
    discard = serializers.BooleanField(required=False)


class DiskSerializer(serializers.Serializer):
    name = serializers.RegexField(r"^[a-z][a-z0-9]{0,31}$")
    path = serializers.RegexField(r"^/dev/[a-z][a-z0-9]{0,31}$")
    model = serializers.CharField(**TEXT)
    serial = serializers.CharField(**TEXT)
    size = serializers.IntegerField(min_value=0, max_value=2**60)
    rotational = serializers.BooleanField(required=False, default=False)
    removable = serializers.BooleanField(required=False, default=False)
    transport = serializers.ChoiceField(TRANSPORTS)
    capabilities = CapabilitiesSerializer(required=False)


class NicSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=32)
    mac = serializers.CharField(max_length=17, allow_blank=True)
    speed_mbps = serializers.IntegerField(min_value=-1, max_value=10**7, allow_null=True)
    driver = serializers.CharField(**TEXT)


class NetworkSerializer(serializers.Serializer):
    """The address the agent was given on the provisioning network."""

    interface = serializers.CharField(max_length=32)
    mac = serializers.CharField(max_length=17)
    address = serializers.RegexField(r"^[0-9.]{7,15}/[0-9]{1,2}$")
    gateway = serializers.IPAddressField(protocol="ipv4", required=False, allow_blank=True)
    dns = serializers.ListField(child=serializers.IPAddressField(), max_length=8, required=False)


class InventorySerializer(serializers.Serializer):
    """The hardware the agent found (the body of the inventory step's result)."""

    cpus = serializers.DictField(child=serializers.CharField(max_length=256), required=False)
    memory_bytes = serializers.IntegerField(min_value=0, max_value=2**60, required=False)
    disks = DiskSerializer(many=True, max_length=64)
    nics = NicSerializer(many=True, max_length=64, required=False)
    firmware = serializers.DictField(child=serializers.CharField(max_length=64), required=False)
    system = serializers.DictField(child=serializers.CharField(**TEXT), required=False)
    network = NetworkSerializer(required=False, allow_null=True)


class StepReportSerializer(serializers.Serializer):
    status = serializers.ChoiceField(("started", "succeeded", "failed"))
    detail = serializers.CharField(max_length=4000, allow_blank=True, required=False, default="")
    result = serializers.JSONField(required=False, default=None)


class HeartbeatSerializer(serializers.Serializer):
    step = serializers.IntegerField(min_value=0, max_value=10000, required=False)
    progress = serializers.IntegerField(min_value=0, max_value=100, required=False)
    detail = serializers.CharField(max_length=500, allow_blank=True, required=False)


class LogSerializer(serializers.Serializer):
    lines = serializers.ListField(
        child=serializers.CharField(max_length=4000, allow_blank=True, trim_whitespace=False),
        max_length=500,
    )


class StepSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    name = serializers.CharField()
    action = serializers.CharField()
    params = serializers.JSONField()
    resume = serializers.BooleanField()


class AgentJobAnswerSerializer(serializers.Serializer):
    """What the agent should do now: run a step, power off (nothing left to do), or
    reboot (into the system it has just deployed)."""

    action = serializers.ChoiceField(("run", "wait", "poweroff", "reboot"))
    job = serializers.IntegerField(allow_null=True)
    kind = serializers.CharField(allow_null=True)
    step = StepSerializer(allow_null=True)
    heartbeat_seconds = serializers.IntegerField()
    reason = serializers.CharField()


class AgentJobSerializer(serializers.ModelSerializer):
    where = serializers.CharField(read_only=True)

    class Meta:
        model = AgentJob
        fields = (
            "id",
            "node",
            "kind",
            "status",
            "where",
            "steps",
            "error",
            "created_at",
            "finished_at",
            "last_heartbeat_at",
            "heartbeat",
        )
        read_only_fields = fields


class DeprovisionSerializer(serializers.Serializer):
    node = serializers.IntegerField(min_value=1, max_value=10**18)
    after = serializers.ChoiceField(DEPROVISION_AFTER, default="retired")
    category = serializers.ChoiceField(WIPE_CATEGORIES, default="best")
    reason = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")


class MigrateSerializer(serializers.Serializer):
    source = serializers.IntegerField(
        min_value=1, max_value=10**18, help_text="The active node whose system moves"
    )
    target = serializers.IntegerField(
        min_value=1, max_value=10**18, help_text="The discovered machine it moves onto"
    )
    disk = serializers.CharField(
        max_length=200,
        allow_blank=True,
        required=False,
        default="",
        help_text="Which of the source's disks moves: smallest, largest, serial:SERIAL or "
        "/dev/NAME; empty when the source has exactly one disk",
    )
    reason = serializers.CharField(max_length=1000, allow_blank=True, required=False, default="")


class MigrationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Migration
        fields = ("id", *Migration.PUBLIC_FIELDS)
        read_only_fields = fields


class WipeCertificateSerializer(serializers.ModelSerializer):
    signature_key_id = serializers.CharField(source="key_id", read_only=True)

    class Meta:
        model = WipeCertificate
        fields = (
            "uuid",
            "node",
            "disk_model",
            "disk_serial",
            "method",
            "category",
            "created_at",
            "document",
            "signature",
            "signature_key_id",
        )
        read_only_fields = fields
