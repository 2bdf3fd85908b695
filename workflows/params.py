"""A task parameter: its type, bounds and how a value is checked and cleaned."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_SIZE_RE = re.compile(r"^\d+(\.\d+)?\s*(B|K|KB|KiB|M|MB|MiB|G|GB|GiB|T|TB|TiB)$", re.IGNORECASE)


class ParamError(ValueError):
    """A parameter value is wrong; ``path`` says where (``tasks[2].image``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Param:
    """One parameter of a task type."""

    name: str
    type: str  # str, int, bool, list, dict, size, choice, list[str], list[dict]
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    max_length: int = 4096
    help: str = ""
    secret: bool = False  # shown only to those who may change workflows

    def clean(self, value: Any, path: str) -> Any:
        kind = self.type
        if kind in {"str", "choice", "size"}:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise ParamError(path, f"must be text, got {_type_name(value)}")
            value = str(value)
            if len(value) > self.max_length:
                raise ParamError(path, f"is longer than {self.max_length} characters")
            if "\x00" in value:
                raise ParamError(path, "must not contain NUL characters")
            if kind == "choice" and value not in self.choices:
                raise ParamError(path, f"must be one of {', '.join(self.choices)}; got {value!r}")
            if kind == "size" and not _SIZE_RE.match(value):
                raise ParamError(path, f"must be a size such as 20GB or 512MiB; got {value!r}")
            return value
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParamError(path, f"must be a whole number, got {_type_name(value)}")
            if self.minimum is not None and value < self.minimum:
                raise ParamError(path, f"must be at least {self.minimum}")
            if self.maximum is not None and value > self.maximum:
                raise ParamError(path, f"must be at most {self.maximum}")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise ParamError(path, f"must be true or false, got {_type_name(value)}")
            return value
        if kind == "list[str]":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list):
                raise ParamError(path, f"must be a list of text, got {_type_name(value)}")
            out = []
            for i, item in enumerate(value):
                out.append(
                    Param(self.name, "str", max_length=self.max_length).clean(item, f"{path}[{i}]")
                )
            return out
        if kind == "list[dict]":
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise ParamError(path, "must be a list of mappings")
            return value
        if kind == "dict":
            if not isinstance(value, dict):
                raise ParamError(path, f"must be a mapping, got {_type_name(value)}")
            return value
        raise AssertionError(f"unknown parameter type {kind}")  # a registry bug, not input


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)
