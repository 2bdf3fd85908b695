"""Serializers every API shares."""

from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """Every refusal: what is wrong, and a stable code."""

    detail = serializers.CharField()
    code = serializers.CharField()
