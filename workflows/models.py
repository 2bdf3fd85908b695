"""Workflow: what a node installs.

The workflows work (YAML definitions, immutable versions, task types) fills
this model in; the node registry only needs something to point at.
"""

from django.db import models


class Workflow(models.Model):
    """A named provisioning workflow that a node can be assigned."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name
