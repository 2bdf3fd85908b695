"""The ``config_run`` step: a configuration-management run after the install.

The controller's worker runs it (``configmgmt``) once the node has reported
``installed``: Ansible (``ansible-playbook`` over SSH with a key from the
credential store) or Salt (``state.apply`` through salt-api). Puppet and
Chef runs are refused when the workflow is saved: nothing runs them yet.
"""

from __future__ import annotations

import re
from typing import Any

from .params import Param, ParamError

CONFIG_RUN = "config_run"
TOOLS = ("ansible", "salt", "puppet", "chef")
BUILT_TOOLS = ("ansible", "salt")
# A playbook path inside PUREBOOT_ANSIBLE_PLAYBOOK_DIR: relative, no "..".
_PLAYBOOK = re.compile(r"^(?!/)(?!.*(^|/)\.\.(/|$))[A-Za-z0-9._/-]{1,255}\.ya?ml$")
_SALT_STATE = re.compile(r"^[A-Za-z0-9_.-]{1,200}(,[A-Za-z0-9_.-]{1,200}){0,19}$")
_CREDENTIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Jinja2 markers: extra variables are data, never templates.
_TEMPLATE_MARKERS = ("{{", "{%", "{#")
_TOOL_PARAMS = {
    "ansible": ("playbook", "credential", "port", "extra_vars"),
    "salt": ("state",),
}


def config_run_params() -> tuple[Param, ...]:
    return (
        Param("tool", "choice", required=True, choices=TOOLS),
        Param(
            "playbook",
            "str",
            default="",
            max_length=255,
            help="ansible: a playbook under PUREBOOT_ANSIBLE_PLAYBOOK_DIR",
        ),
        Param(
            "credential",
            "str",
            default="",
            max_length=100,
            help="ansible: the stored credential whose username and private key SSH uses",
        ),
        Param("port", "int", default=22, minimum=1, maximum=65535, help="ansible: SSH port"),
        Param("extra_vars", "dict", default={}, help="ansible: extra variables (-e)"),
        Param("state", "str", default="", max_length=4096, help="salt: state(s) to apply"),
        Param("timeout", "int", default=1800, minimum=10, maximum=6 * 3600, help="seconds"),
    )


def check_config_run(params: dict[str, Any], path: str) -> None:
    """The parameters a tool uses are set, and no other tool's are."""
    tool = params["tool"]
    if tool not in BUILT_TOOLS:
        raise ParamError(
            f"{path}.tool",
            f"config_run with tool {tool} is not available yet: PureBoot runs Ansible "
            "playbooks and Salt states after an install; Puppet and Chef nodes are "
            "classified (pureboot-enc) or registered, and their agents run on their own",
        )
    defaults = {p.name: p.default for p in config_run_params()}
    for name, value in params.items():
        if name in ("tool", "timeout") or name in _TOOL_PARAMS[tool]:
            continue
        if value != defaults[name] and not (value == [] and defaults[name] == ()):
            raise ParamError(f"{path}.{name}", f"is not a parameter of config_run with {tool}")
    if tool == "ansible":
        if not _PLAYBOOK.match(params["playbook"]):
            raise ParamError(
                f"{path}.playbook",
                "is a .yml/.yaml file path relative to PUREBOOT_ANSIBLE_PLAYBOOK_DIR, without '..'",
            )
        if not _CREDENTIAL.match(params["credential"]):
            raise ParamError(f"{path}.credential", "names the stored SSH credential")
        check_extra_vars(params.get("extra_vars") or {}, f"{path}.extra_vars")
    if tool == "salt" and not _SALT_STATE.match(params["state"]):
        raise ParamError(f"{path}.state", "is a Salt state name, or several separated by commas")


def check_extra_vars(value: Any, path: str, top: bool = True) -> None:
    """No ``ansible_*`` variable (connection settings) and no template text, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            if top and str(key).lower().startswith("ansible_"):
                raise ParamError(
                    f"{path}.{key}", "ansible_* variables are set by PureBoot, not extra_vars"
                )
            if any(marker in str(key) for marker in _TEMPLATE_MARKERS):
                raise ParamError(f"{path}.{key}", "a key holds no Jinja2 template markers")
            check_extra_vars(item, f"{path}.{key}", top=False)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_extra_vars(item, f"{path}[{index}]", top=False)
    elif isinstance(value, str) and any(marker in value for marker in _TEMPLATE_MARKERS):
        raise ParamError(path, "holds a Jinja2 template marker ({{, {% or {#); values are text")
