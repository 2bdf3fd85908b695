"""Credential serializers: secrets go in, never out."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from .. import services as credentials
from ..models import Credential


def _storable(value: str) -> str:
    # Lone surrogates cannot be encoded, so they could never be encrypted.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise serializers.ValidationError("Must be valid Unicode text.") from None
    return value


class CredentialSerializer(serializers.ModelSerializer):
    """Metadata, plus write-only ``password``/``private_key`` ('' clears one).

    A credential kept in an external store (``store`` vault or azure) carries
    the reference fields instead of secrets; a ``password`` sent to change
    one is written to the store as a new version.
    """

    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=credentials.MAX_PASSWORD_CHARS,
        style={"input_type": "password"},
        validators=[_storable],
    )
    private_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=credentials.MAX_PRIVATE_KEY_CHARS,
        help_text="A private key or API token.",
        validators=[_storable],
    )
    reason = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=1000,
        help_text="Why: shown to the approver and kept on the audit trail.",
    )
    has_password = serializers.BooleanField(read_only=True)
    has_private_key = serializers.BooleanField(read_only=True)

    class Meta:
        model = Credential
        fields = (
            "id",
            "name",
            "kind",
            "username",
            "scope",
            "description",
            "store",
            "external_mount",
            "external_path",
            "external_key",
            "external_version",
            "password",
            "private_key",
            "reason",
            "has_password",
            "has_private_key",
            "secret_changed_at",
            "created_at",
            "created_by",
            "updated_at",
            "updated_by",
        )
        read_only_fields = (
            "secret_changed_at",
            "created_at",
            "created_by",
            "updated_at",
            "updated_by",
        )

    def validate(self, attrs: dict) -> dict:
        # The same check the approved change runs again: shape, bounds, the
        # secret present in its store; so a bad reference is a 400 now.
        fields = {k: v for k, v in attrs.items() if k in credentials.EDITABLE_FIELDS}
        secrets = {f: attrs[f] for f in credentials.SECRET_FIELDS if f in attrs}
        try:
            credentials.check_reference(fields, secrets, self.instance)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return attrs

    def split(self) -> tuple[dict, dict]:
        """The validated metadata and the plaintext secrets, apart."""
        data = dict(self.validated_data)
        data.pop("reason", None)
        secrets = {f: data.pop(f) for f in credentials.SECRET_FIELDS if f in data}
        return data, secrets


class CredentialNameSerializer(serializers.ModelSerializer):
    """What Operators see: which credentials exist, nothing about them."""

    class Meta:
        model = Credential
        fields = ("id", "name", "kind")
        read_only_fields = fields
