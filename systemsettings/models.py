"""System settings changed at run time through approved requests."""

from __future__ import annotations

from django.db import models


class SystemSetting(models.Model):
    """A system-wide setting changed at run time (through an approved request).

    The environment gives each setting its default (see :mod:`systemsettings.config`);
    a row here overrides it. Rows are written only by an executed approval
    request, never directly.
    """

    key = models.CharField(max_length=64, unique=True)
    value = models.JSONField()
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, editable=False)

    class Meta:
        db_table = "pureboot_systemsetting"  # the table predates this app
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key} = {self.value!r}"
