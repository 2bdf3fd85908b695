"""The node timeline's answer: entries newest first and the cursor of the next page."""

from __future__ import annotations

from rest_framework import serializers


class NodeTimelineEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    source = serializers.CharField(
        help_text="event, audit, boot, install, log or approval: the table the entry comes from"
    )
    kind = serializers.CharField(help_text="What happened, within its source")
    actor = serializers.CharField()
    summary = serializers.CharField()
    state = serializers.CharField(help_text="The node's state the entry names, if any")
    url = serializers.CharField(help_text="A page about the entry (an approval request), or ''")
    details = serializers.DictField()


class NodeTimelinePageSerializer(serializers.Serializer):
    results = NodeTimelineEntrySerializer(many=True)
    next = serializers.CharField(
        allow_null=True, help_text="The URL of the next (older) page, or null at the end"
    )
    next_cursor = serializers.CharField(allow_null=True)


class NodeTimelineQuerySerializer(serializers.Serializer):
    before = serializers.RegexField(
        r"^\d{1,18}\.\d{1,2}\.\d{1,18}$",
        required=False,
        error_messages={"invalid": "'before' is the next_cursor of a previous page."},
    )
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)
    source = serializers.CharField(
        required=False,
        max_length=200,
        help_text="Comma-separated sources to show (event, audit, boot, install, log, approval)",
    )
