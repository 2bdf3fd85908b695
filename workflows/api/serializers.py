"""Workflow API serializers."""

from __future__ import annotations

from rest_framework import serializers

from ..choices import ReportStatus
from ..models import RunLogLine, Workflow, WorkflowRun, WorkflowVersion
from ..registry import TASK_TYPES, redact_tasks, redact_text, secret_values

MAX_CONTENT_CHARS = 256 * 1024


def may_see_secrets(context) -> bool:
    """Secret parameters (password hashes) are shown to those who may change workflows."""
    request = context.get("request")
    return bool(request and request.user.has_perm("workflows.change_workflow"))


class VersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = WorkflowVersion
        fields = ("number", "content_hash", "author_name", "created_at", "content", "definition")

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not may_see_secrets(self.context):
            values = secret_values(instance.tasks)
            data["content"] = redact_text(instance.content, values)
            data["definition"] = {
                **instance.definition,
                "tasks": redact_tasks(instance.tasks),
            }
        return data


class VersionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = WorkflowVersion
        fields = ("number", "content_hash", "author_name", "created_at")


class WorkflowSerializer(serializers.ModelSerializer):
    """Read: the workflow with its latest version. Write: ``{"content": "<yaml>"}``."""

    content = serializers.CharField(
        write_only=True, max_length=MAX_CONTENT_CHARS, trim_whitespace=False
    )
    latest_version = serializers.SerializerMethodField()
    arch = serializers.SerializerMethodField()
    firmware = serializers.SerializerMethodField()
    tasks = serializers.SerializerMethodField()

    class Meta:
        model = Workflow
        fields = (
            "id",
            "name",
            "description",
            "arch",
            "firmware",
            "tasks",
            "latest_version",
            "content",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("name", "description", "created_at", "updated_at")

    def _latest(self, obj):
        newest = getattr(obj, "newest_versions", None)  # prefetched by the viewset
        if newest is not None:
            return newest[0] if newest else None
        cache = getattr(obj, "_latest_cache", None)
        if cache is None:
            cache = obj._latest_cache = obj.latest_version
        return cache

    def get_latest_version(self, obj) -> dict | None:
        latest = self._latest(obj)
        if latest is None:
            return None
        data = VersionSummarySerializer(latest).data
        data["content"] = latest.content
        if not may_see_secrets(self.context):
            data["content"] = redact_text(latest.content, secret_values(latest.tasks))
        return data

    def get_arch(self, obj) -> list[str]:
        latest = self._latest(obj)
        return latest.definition["arch"] if latest else []

    def get_firmware(self, obj) -> list[str]:
        latest = self._latest(obj)
        return latest.definition["firmware"] if latest else []

    def get_tasks(self, obj) -> list[dict]:
        latest = self._latest(obj)
        if latest is None:
            return []
        return latest.tasks if may_see_secrets(self.context) else redact_tasks(latest.tasks)


class TaskTypeSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    runs_on = serializers.CharField()
    renders = serializers.CharField(allow_null=True)
    available = serializers.BooleanField(help_text="Whether a workflow may use it today.")
    not_available_because = serializers.CharField(allow_blank=True)
    params = serializers.ListField(child=serializers.DictField())

    @staticmethod
    def registry_data() -> list[dict]:
        return [
            {
                "name": t.name,
                "description": t.description,
                "runs_on": t.runs_on,
                "renders": t.renders,
                "available": not t.not_built,
                "not_available_because": t.not_built,
                "params": [
                    {
                        "name": p.name,
                        "type": p.type,
                        "required": p.required,
                        "default": list(p.default) if isinstance(p.default, tuple) else p.default,
                        "choices": list(p.choices),
                        "help": p.help,
                    }
                    for p in t.params
                ],
            }
            for t in TASK_TYPES.values()
        ]


class ReportSerializer(serializers.Serializer):
    """``POST /api/v1/report``: what an installer says about its progress."""

    node_id = serializers.CharField(required=False, max_length=64)
    status = serializers.ChoiceField(choices=ReportStatus.choices)
    progress = serializers.IntegerField(required=False, min_value=0, max_value=100)
    step = serializers.IntegerField(required=False, min_value=0, max_value=10_000)
    logs = serializers.ListField(
        child=serializers.CharField(max_length=4000, allow_blank=True, trim_whitespace=False),
        required=False,
        max_length=200,
        default=list,
    )


class RunSerializer(serializers.ModelSerializer):
    workflow = serializers.CharField(source="version.workflow.name")
    version = serializers.IntegerField(source="version.number")

    class Meta:
        model = WorkflowRun
        fields = (
            "id",
            "node",
            "workflow",
            "version",
            "status",
            "progress",
            "steps",
            "error",
            "started_at",
            "finished_at",
            "last_report_at",
        )


class RunLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunLogLine
        fields = ("timestamp", "line")
