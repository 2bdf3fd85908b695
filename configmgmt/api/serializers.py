"""Shapes of the inventory answers (for the OpenAPI schema; the views build them)."""

from rest_framework import serializers


class AnsibleGroupSerializer(serializers.Serializer):
    hosts = serializers.ListField(child=serializers.CharField())


class AnsibleInventorySerializer(serializers.Serializer):
    """``ansible-inventory --list``'s input: one key per group, and ``_meta.hostvars``.

    Groups are named ``site_<slug>``, ``state_<state>``, ``tag_<tag>`` and
    ``workflow_<name>`` with every character Ansible refuses made ``_``.
    """

    _meta = serializers.DictField(help_text="{'hostvars': {host: {variable: value}}}")
    all = serializers.DictField(help_text="{'children': [every group]}")


class PuppetClassificationSerializer(serializers.Serializer):
    """A Puppet external node classifier's answer for one certname."""

    classes = serializers.JSONField(help_text="a list of class names, or {class: {param: value}}")
    parameters = serializers.DictField()
    environment = serializers.CharField()
