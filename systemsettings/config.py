"""System-wide settings that change at run time, only through approved requests.

Each setting has a default from the environment (``settings.py``) and may be
overridden by a :class:`~systemsettings.models.SystemSetting` row. Changing one,
the approval policy included, is itself a four-eye action
(``setting.change``): nobody loosens the rules on their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from audit import services as audit
from pureboot import gate

from .models import SystemSetting

MAX_HOURS = 24 * 7
_ACTION_NAME = re.compile(r"^[a-z][a-z_.]{0,63}$")


def _int_between(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"A whole number from {low} to {high}.")
        if not low <= value <= high:
            raise ValidationError(f"A whole number from {low} to {high}.")
        return value

    return check


def _windows(value: Any) -> dict[str, int]:
    """Per-action hours. The action names are checked where the actions are known:
    the approvals app refuses a request naming an action it does not have."""
    if not isinstance(value, dict):
        raise ValidationError('An object of action -> hours, e.g. {"retire": 24}.')
    hours = _int_between(1, MAX_HOURS)
    out = {}
    for key, hours_value in value.items():
        if not isinstance(key, str) or not _ACTION_NAME.match(key):
            raise ValidationError(f"{str(key)[:40]!r} is not an action name.")
        out[key] = hours(hours_value)
    return out


@dataclass(frozen=True)
class Setting:
    key: str
    description: str
    default: Callable[[], Any]
    clean: Callable[[Any], Any]


SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in (
        Setting(
            "approvals_required",
            "How many people besides the requester must approve a request.",
            lambda: settings.PUREBOOT_APPROVALS_REQUIRED,
            _int_between(1, 5),
        ),
        Setting(
            "approval_hours",
            "How long a request waits for its approvals, in hours.",
            lambda: settings.PUREBOOT_APPROVAL_HOURS,
            _int_between(1, MAX_HOURS),
        ),
        Setting(
            "approval_windows",
            "Per-action approval windows in hours, overriding approval_hours.",
            lambda: dict(settings.PUREBOOT_APPROVAL_WINDOWS),
            _windows,
        ),
        Setting(
            "emergency_max_hours",
            "The longest emergency access one request may grant, in hours.",
            lambda: settings.PUREBOOT_EMERGENCY_MAX_HOURS,
            _int_between(1, 72),
        ),
        Setting(
            "approver_cooling_off_hours",
            "Hours after an account is made, or given a role that can approve, before it "
            "may approve anyone's request.",
            lambda: settings.PUREBOOT_APPROVER_COOLING_OFF_HOURS,
            _int_between(0, 720),
        ),
    )
}


def definition(key: str) -> Setting:
    try:
        return SETTINGS[key]
    except KeyError:
        raise ValidationError(
            {"key": f"Unknown setting {str(key)[:64]!r}; known: {', '.join(SETTINGS)}."}
        ) from None


def get(key: str) -> Any:
    """The setting's current value: the stored override, else the default."""
    setting = definition(key)
    row = SystemSetting.objects.filter(key=key).values_list("value", flat=True).first()
    return setting.default() if row is None else row


def current() -> list[dict[str, Any]]:
    """Every setting with its value, default and where the value comes from."""
    stored = dict(SystemSetting.objects.values_list("key", "value"))
    return [
        {
            "key": s.key,
            "value": stored.get(s.key, s.default()),
            "default": s.default(),
            "source": "database" if s.key in stored else "environment",
            "description": s.description,
        }
        for s in SETTINGS.values()
    ]


def clean(key: str, value: Any) -> Any:
    try:
        return definition(key).clean(value)
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            raise
        raise ValidationError({"value": exc.messages}) from None


def binding(key: str) -> str:
    """What an approved change of ``key`` is bound to: its value now."""
    return gate.binding(get(key))


def apply(key: str, value: Any, actor: str, *, approval: gate.Approval, reason: str = "") -> str:
    """Store ``value`` for ``key``, only with ``approval`` sealed for changing it as it is."""
    value = clean(key, value)
    with transaction.atomic():
        SystemSetting.objects.select_for_update().filter(key=key).first()
        gate.verify(
            approval, action="setting.change", target=f"setting:{key}", bound_to=binding(key)
        )
        before = get(key)
        row, _ = SystemSetting.objects.select_for_update().get_or_create(
            key=key, defaults={"value": value, "updated_by": actor}
        )
        row.value, row.updated_by = value, actor
        row.save()
        audit.record(
            actor=actor,
            action="setting.change",
            object_type="systemsettings.systemsetting",
            object_id=key,
            changes={key: {"before": before, "after": value}},
            message=reason,
        )
    return f"{key}: {before!r} -> {value!r}"
