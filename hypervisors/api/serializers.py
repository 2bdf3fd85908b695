"""Hypervisor API shapes: field lists and bounds; the rules live in the services."""

from __future__ import annotations

from rest_framework import serializers

from credentials.models import Credential
from nodes.api.serializers import ScopedSiteField
from nodes.choices import Arch, Firmware
from nodes.models import validate_hostname
from workflows.models import Workflow
from workflows.vmsteps import VM_DISK_INTERFACES, VM_NIC_MODELS

from .. import services
from ..drivers.base import PowerAction
from ..models import Hypervisor, HypervisorOperation, HypervisorTemplate, VirtualMachine


class HypervisorSerializer(serializers.ModelSerializer):
    site = ScopedSiteField(slug_field="slug", required=False, allow_null=True)
    credential = serializers.SlugRelatedField(
        slug_field="name",
        queryset=Credential.objects.filter(kind="hypervisor"),
        required=False,
        allow_null=True,
        help_text="The name of a credential of kind 'hypervisor' (its secret is never shown).",
    )
    capabilities = serializers.SerializerMethodField()
    vm_count = serializers.SerializerMethodField()

    class Meta:
        model = Hypervisor
        fields = (
            "id",
            *services.EDITABLE,
            "capabilities",
            "health",
            "health_message",
            "version",
            "inventory",
            "last_sync_at",
            "last_error",
            "vm_count",
            "created_at",
            "updated_at",
        )
        read_only_fields = (
            "health",
            "health_message",
            "version",
            "inventory",
            "last_sync_at",
            "last_error",
            "created_at",
            "updated_at",
        )
        validators = []
        extra_kwargs = {"name": {"validators": []}}

    def get_capabilities(self, obj: Hypervisor) -> list[str]:
        try:
            return services.capabilities(obj)
        except Exception:  # noqa: BLE001 - a type without a driver offers nothing
            return []

    def get_vm_count(self, obj: Hypervisor) -> int:
        return services.live_vms(obj).count()


class VirtualMachineSerializer(serializers.ModelSerializer):
    hypervisor = serializers.SlugRelatedField(slug_field="name", read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)

    class Meta:
        model = VirtualMachine
        fields = ("id", *VirtualMachine.PUBLIC_FIELDS, "status_display")
        read_only_fields = fields


class HypervisorTemplateSerializer(serializers.ModelSerializer):
    hypervisor = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = HypervisorTemplate
        fields = (
            "id",
            "hypervisor",
            "platform_id",
            "name",
            "cpus",
            "memory_mib",
            "disk_bytes",
            "os",
            "present",
            "last_seen_at",
        )
        read_only_fields = fields


class OperationSerializer(serializers.ModelSerializer):
    hypervisor = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = HypervisorOperation
        fields = (
            "id",
            "hypervisor",
            "vm",
            "kind",
            "params",
            "status",
            "attempts",
            "error",
            "error_code",
            "result",
            "actor",
            "created_at",
            "started_at",
            "finished_at",
        )
        read_only_fields = fields


class DiskSpecSerializer(serializers.Serializer):
    size = serializers.CharField(max_length=32, help_text="e.g. 20GiB, 20GB or bytes")
    storage = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    interface = serializers.ChoiceField(VM_DISK_INTERFACES, default="virtio")


class NicSpecSerializer(serializers.Serializer):
    network = serializers.CharField(
        max_length=200, help_text="A network of the hypervisor (libvirt: or bridge:NAME)"
    )
    model = serializers.ChoiceField(VM_NIC_MODELS, default="virtio")


class VMCreateSerializer(serializers.Serializer):
    """``POST /api/v1/hypervisors/{id}/vms``. With a workflow, its ``vm_create``
    step gives what the request leaves out."""

    name = serializers.CharField(max_length=63, validators=[validate_hostname])
    workflow = serializers.SlugRelatedField(
        slug_field="name", queryset=Workflow.objects.all(), required=False, allow_null=True
    )
    cpus = serializers.IntegerField(min_value=1, max_value=512, required=False)
    memory_mib = serializers.IntegerField(min_value=64, max_value=16 * 1024 * 1024, required=False)
    disks = DiskSpecSerializer(many=True, required=False, max_length=16)
    networks = NicSpecSerializer(many=True, required=False, min_length=1, max_length=8)
    template = serializers.CharField(max_length=200, required=False, allow_blank=True)
    cluster = serializers.CharField(max_length=200, required=False, allow_blank=True)
    host = serializers.CharField(max_length=200, required=False, allow_blank=True)
    firmware = serializers.ChoiceField((Firmware.BIOS, Firmware.UEFI), required=False)
    arch = serializers.ChoiceField((Arch.X86_64, Arch.AARCH64), required=False)
    power_on = serializers.BooleanField(required=False)
    ha = serializers.BooleanField(required=False)


class VMCreatedSerializer(serializers.Serializer):
    vm = VirtualMachineSerializer()
    operation = OperationSerializer()


class PowerSerializer(serializers.Serializer):
    action = serializers.ChoiceField([a.value for a in PowerAction])
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class MigrateVMSerializer(serializers.Serializer):
    host = serializers.CharField(max_length=200)


class HASerializer(serializers.Serializer):
    enabled = serializers.BooleanField()


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class TemplateSyncSerializer(serializers.Serializer):
    hypervisor = serializers.IntegerField(
        required=False, min_value=1, help_text="Only this hypervisor (default: every one you see)"
    )
