"""Parse and validate workflow YAML into a normalised definition.

Errors say exactly where: YAML syntax errors with line and column, unknown
task types with the list of known ones, parameters with their path
(``tasks[2].image``). Oversized documents and alias bombs are refused
before any expensive work.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from .registry import CONTROLLER, TASK_TYPES, ParamError
from .vmsteps import VM_CREATE_TYPES

MAX_DOCUMENT_BYTES = 256 * 1024
MAX_NODES = 20_000  # YAML nodes after alias expansion
MAX_DEPTH = 32
MAX_TASKS = 200
ARCHES = ("x86_64", "aarch64", "armhf")
FIRMWARE = ("bios", "uefi", "pi")
TOP_LEVEL = ("name", "description", "arch", "firmware", "tasks")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


class DefinitionError(ValueError):
    """A workflow document is not acceptable; ``path``/``line``/``column`` say where."""

    def __init__(
        self, message: str, *, path: str = "", line: int | None = None, column: int | None = None
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.column = column
        where = []
        if line is not None:
            where.append(f"line {line}, column {column}")
        if path:
            where.append(path)
        super().__init__(f"{' '.join(where)}: {message}" if where else message)

    def as_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "path": self.path or None,
            "line": self.line,
            "column": self.column,
        }


@dataclass(frozen=True)
class Definition:
    """A validated workflow: what gets stored in an immutable version."""

    name: str
    description: str
    arch: tuple[str, ...]
    firmware: tuple[str, ...]
    tasks: tuple[dict[str, Any], ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "arch": list(self.arch),
            "firmware": list(self.firmware),
            "tasks": [dict(t) for t in self.tasks],
        }


class _Loader(yaml.SafeLoader):
    """SafeLoader whose values are all JSON: dates stay text, no sets or binary."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_text(value: str, path: str) -> None:
    """A YAML escape (``"\\ud800"``) can make a lone surrogate, which is no character:
    stored as JSON or encoded as UTF-8 or UTF-16 it would fail later, far from here."""
    if _SURROGATE.search(value):
        raise DefinitionError(
            "text holds a lone surrogate (\\ud800-\\udfff), no character", path=path
        )


def _check_json(value: Any, path: str) -> None:
    """Everything stored must be plain JSON (text keys; text, numbers, booleans, lists)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise DefinitionError(
                    f"mapping keys must be text, got {key!r}", path=path or "(top level)"
                )
            _check_text(key, path or "(top level)")
            _check_json(item, f"{path}.{key}" if path else key)
    elif isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise DefinitionError("numbers must be finite", path=path)
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise DefinitionError(
            f"only text, numbers, true/false, lists and mappings are allowed; got "
            f"{type(value).__name__}",
            path=path,
        )


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_graph(node: yaml.Node) -> None:
    """Count nodes with aliases expanded, so an alias bomb is refused early."""
    budget = [MAX_NODES]
    stack: list[tuple[yaml.Node, int]] = [(node, 0)]
    while stack:
        current, depth = stack.pop()
        budget[0] -= 1
        if budget[0] < 0:
            raise DefinitionError(
                f"document expands to more than {MAX_NODES} elements (too many aliases?)"
            )
        if depth > MAX_DEPTH:
            mark = current.start_mark
            raise DefinitionError(
                f"nested deeper than {MAX_DEPTH} levels", line=mark.line + 1, column=mark.column + 1
            )
        if isinstance(current, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in current.value)
        elif isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))


def load_yaml(text: str | bytes) -> Any:
    """Safely load one YAML document with size, alias and depth limits."""
    if isinstance(text, bytes):
        if len(text) > MAX_DOCUMENT_BYTES:
            raise DefinitionError(f"document is larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DefinitionError(f"document is not UTF-8 text (byte {exc.start})") from None
    if len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise DefinitionError(f"document is larger than {MAX_DOCUMENT_BYTES} bytes")
    if "\x00" in text:
        raise DefinitionError("document contains NUL characters")
    try:
        node = yaml.compose(text, Loader=_Loader)
        if node is None:
            raise DefinitionError("document is empty")
        _check_graph(node)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        _check_json(data, "")
        return data
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if mark is not None:
            raise DefinitionError(
                f"YAML syntax error: {problem}", line=mark.line + 1, column=mark.column + 1
            ) from None
        raise DefinitionError(f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise DefinitionError(f"YAML error: {exc}") from None
    except RecursionError:
        raise DefinitionError(f"nested deeper than {MAX_DEPTH} levels") from None


def _choices(raw: Any, allowed: tuple[str, ...], path: str) -> tuple[str, ...]:
    if raw is None:
        return allowed
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise DefinitionError(f"must be a non-empty list of {', '.join(allowed)}", path=path)
    for i, value in enumerate(raw):
        if value not in allowed:
            raise DefinitionError(
                f"must be one of {', '.join(allowed)}; got {value!r}", path=f"{path}[{i}]"
            )
    return tuple(v for v in allowed if v in raw)


def parse(text: str | bytes) -> Definition:
    """Parse and validate a workflow document. Raises DefinitionError."""
    data = load_yaml(text)
    if not isinstance(data, dict):
        raise DefinitionError("a workflow is a mapping with name, description and tasks")
    unknown = sorted(str(k) for k in data if k not in TOP_LEVEL)  # keys are text (_check_json)
    if unknown:
        raise DefinitionError(
            f"unknown key; a workflow has: {', '.join(TOP_LEVEL)}", path=unknown[0]
        )
    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DefinitionError(
            "required: 1-100 lower-case letters, digits, '.', '_' or '-', starting with a "
            "letter or digit",
            path="name",
        )
    description = data.get("description") or ""
    if not isinstance(description, str) or len(description) > 2000:
        raise DefinitionError("must be text of at most 2000 characters", path="description")
    arch = _choices(data.get("arch"), ARCHES, "arch")
    firmware = _choices(data.get("firmware"), FIRMWARE, "firmware")
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise DefinitionError("required: a non-empty list of tasks", path="tasks")
    if len(raw_tasks) > MAX_TASKS:
        raise DefinitionError(f"at most {MAX_TASKS} tasks", path="tasks")
    tasks = []
    for index, raw in enumerate(raw_tasks):
        path = f"tasks[{index}]"
        if not isinstance(raw, dict):
            raise DefinitionError("each task is a mapping with a type", path=path)
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in TASK_TYPES:
            raise DefinitionError(
                f"unknown task type {kind!r}; known types: {', '.join(sorted(TASK_TYPES))}",
                path=f"{path}.type",
            )
        task_type = TASK_TYPES[kind]
        params = {k: v for k, v in raw.items() if k != "type"}
        try:
            cleaned = task_type.clean(params, path)
        except ParamError as exc:
            raise DefinitionError(exc.message, path=exc.path) from None
        if task_type.arches and not set(arch) <= set(task_type.arches):
            raise DefinitionError(
                f"{kind} runs on {', '.join(task_type.arches)} only; limit the workflow's "
                f"arch to those",
                path=f"{path}.type",
            )
        if task_type.firmware and not set(firmware) <= set(task_type.firmware):
            raise DefinitionError(
                f"{kind} runs on firmware {', '.join(task_type.firmware)} only; limit the "
                f"workflow's firmware to that",
                path=f"{path}.type",
            )
        tasks.append({"type": kind, **cleaned})
    installers = [t["type"] for t in tasks if TASK_TYPES[t["type"]].renders]
    if len(installers) > 1:
        raise DefinitionError(
            f"a workflow has at most one installer task; found {', '.join(installers)}",
            path="tasks",
        )
    for index, task in enumerate(tasks):
        reason = TASK_TYPES[task["type"]].not_built
        if reason:
            raise DefinitionError(
                f"task type {task['type']!r} is not available yet: {reason}",
                path=f"tasks[{index}].type",
            )
    _check_nfs_root(tasks)  # first: its refusals name nfs_root
    _check_image_deploy(tasks)
    _check_windows(tasks)
    _check_folded_steps(tasks)
    _check_vm_steps(tasks)
    return Definition(name, description, arch, firmware, tuple(tasks))


# What may run with nfs_root besides the controller's steps: raspberrypi_os configures
# the node's writable /etc, /var and /home at its first boot (PureBoot's boot script
# runs its firstrun.sh), and the script_run steps folded into it run there too.
NFS_ROOT_COMPANIONS = ("raspberrypi_os", "script_run")


def _check_nfs_root(tasks: list[dict]) -> None:
    """A diskless machine boots its NFS root; only a first-boot configuration runs on it."""
    roots = [i for i, t in enumerate(tasks) if t["type"] == "nfs_root"]
    if not roots:
        return
    if len(roots) > 1:
        raise DefinitionError("a workflow boots one NFS root", path=f"tasks[{roots[1]}].type")
    for index, task in enumerate(tasks):
        kind = task["type"]
        if kind == "nfs_root" or TASK_TYPES[kind].runs_on == CONTROLLER:
            continue
        path = f"tasks[{index}]"
        if kind not in NFS_ROOT_COMPANIONS:
            raise DefinitionError(
                f"{kind} cannot share a workflow with nfs_root: {_nfs_root_refusal(kind)}",
                path=f"{path}.type",
            )
        if kind == "raspberrypi_os" and index < roots[0]:
            raise DefinitionError(
                "raspberrypi_os configures the NFS root the node boots: put it after nfs_root",
                path=f"{path}.type",
            )
        if kind == "raspberrypi_os" and task["packages"]:
            raise DefinitionError(
                "a diskless node cannot install packages: its root file system is read-only "
                "over NFS; install them in the template (manage.py import_rootfs)",
                path=f"{path}.packages",
            )


def _nfs_root_refusal(kind: str) -> str:
    """Why ``kind`` makes no sense on a diskless node."""
    if kind in ("pxe_boot", "image_deploy"):
        return "nfs_root is the diskless node's network boot, now and at every boot"
    if kind in ("disk_wipe", "partition"):
        return "a diskless node has no disk to prepare"
    if kind == "package_install":
        return (
            "a diskless node's root file system is read-only over NFS; install the packages "
            "in the template (manage.py import_rootfs)"
        )
    if TASK_TYPES[kind].renders:
        return (
            "a diskless node runs no installer; raspberrypi_os is the one configuration it "
            "takes (on its first boot, on its NFS root)"
        )
    return "a diskless node boots its NFS root and installs nothing"


def _check_vm_steps(tasks: list[dict]) -> None:
    """A VM is made once, before anything boots: its step comes first."""
    creates = [i for i, t in enumerate(tasks) if t["type"] in VM_CREATE_TYPES]
    if len(creates) > 1:
        raise DefinitionError("a workflow creates one VM", path=f"tasks[{creates[1]}].type")
    if creates and creates[0] != 0:
        raise DefinitionError(
            "the VM is created before it can boot anything: put its step first",
            path=f"tasks[{creates[0]}].type",
        )
    starts = [i for i, t in enumerate(tasks) if t["type"] == "ovirt_vm_start"]
    if starts and not (creates and tasks[0]["type"] == "ovirt_vm_create"):
        raise DefinitionError(
            "ovirt_vm_start powers on the VM an ovirt_vm_create step makes: add that step first",
            path=f"tasks[{starts[0]}].type",
        )
    if starts and not tasks[0]["power_on"]:
        raise DefinitionError(
            "ovirt_vm_start powers the VM on, but ovirt_vm_create says power_on: false",
            path=f"tasks[{starts[0]}].type",
        )


# The steps an installer runs for PureBoot (workflows.context._fold_steps):
# anything else would be accepted and silently never run.
FOLDED_MANAGERS = ("auto", "apt", "dnf", "yum", "pacman")
FOLDED_INTERPRETERS = ("bash", "sh", "python")
_WINDOWS_HINT = (
    " (on Windows, windows_install's first_logon_commands and post_install_powershell run "
    "commands and PowerShell scripts at the first logon)"
)


def _check_image_deploy(tasks: list[dict]) -> None:
    """An image deployment is the whole install: the agent boots, writes, and reports."""
    deploys = [i for i, t in enumerate(tasks) if t["type"] == "image_deploy"]
    layouts = [i for i, t in enumerate(tasks) if t["type"] == "partition"]
    wipes = [i for i, t in enumerate(tasks) if t["type"] == "disk_wipe"]
    if wipes and (not deploys or wipes[0] > deploys[0] or (layouts and wipes[0] > layouts[0])):
        raise DefinitionError(
            "disk_wipe runs in the PureBoot agent before an image is written: put it before "
            "the workflow's partition and image_deploy steps (to wipe a machine for good, "
            "deprovision it: POST /api/v1/deprovision)",
            path=f"tasks[{wipes[0]}].type",
        )
    if len(wipes) > 1:
        raise DefinitionError("a workflow wipes once", path=f"tasks[{wipes[1]}].type")
    if layouts and not deploys:
        raise DefinitionError(
            "a partition step lays the disk out for a file-level image_deploy (installers "
            "partition the disk themselves): add the image_deploy after it",
            path=f"tasks[{layouts[0]}].type",
        )
    if len(layouts) > 1:
        raise DefinitionError("a workflow lays out one disk", path=f"tasks[{layouts[1]}].type")
    if layouts and layouts[0] > deploys[0]:
        raise DefinitionError(
            "the partition step comes before the image_deploy it lays the disk out for",
            path=f"tasks[{layouts[0]}].type",
        )
    if not deploys:
        return
    if len(deploys) > 1:
        raise DefinitionError("a workflow deploys one image", path=f"tasks[{deploys[1]}].type")
    for index, task in enumerate(tasks):
        if task["type"] == "pxe_boot" or TASK_TYPES[task["type"]].renders:
            raise DefinitionError(
                f"{task['type']} cannot share a workflow with image_deploy: the agent is the "
                "machine's install boot and the image is its system",
                path=f"tasks[{index}].type",
            )
        if task["type"] in ("package_install", "script_run"):
            raise DefinitionError(
                f"{task['type']} runs inside an installer; an image deployment has none "
                "(bake it into the image, or use its first boot)",
                path=f"tasks[{index}].type",
            )


def _check_folded_steps(tasks: list[dict]) -> None:
    seen_installer = False
    for index, task in enumerate(tasks):
        kind = task["type"]
        if TASK_TYPES[kind].renders:
            seen_installer = True
            continue
        if kind not in ("package_install", "script_run"):
            continue
        path = f"tasks[{index}]"
        if "windows_install" in (t["type"] for t in tasks):
            raise DefinitionError(
                f"{kind} does not run in a Windows install: use windows_install's "
                "first_logon_commands (command lines) or post_install_powershell (PowerShell "
                "scripts), which run once at the first logon",
                path=f"{path}.type",
            )
        if not seen_installer:
            raise DefinitionError(
                f"{kind} runs inside the installer: put it after the workflow's installer task "
                "(nothing runs it before or without one)",
                path=f"{path}.type",
            )
        if kind == "package_install" and task["manager"] not in FOLDED_MANAGERS:
            raise DefinitionError(
                f"manager {task['manager']!r} is not run yet; use one of "
                f"{', '.join(FOLDED_MANAGERS)}{_WINDOWS_HINT}",
                path=f"{path}.manager",
            )
        if kind == "script_run" and task["interpreter"] not in FOLDED_INTERPRETERS:
            raise DefinitionError(
                f"interpreter {task['interpreter']!r} is not run yet; use one of "
                f"{', '.join(FOLDED_INTERPRETERS)}{_WINDOWS_HINT}",
                path=f"{path}.interpreter",
            )


def _check_windows(tasks: list[dict]) -> None:
    """windows_install boots a Windows boot image; domain_join is a part of its unattend."""
    installs = [i for i, t in enumerate(tasks) if t["type"] == "windows_install"]
    joins = [i for i, t in enumerate(tasks) if t["type"] == "domain_join"]
    if joins and (not installs or joins[0] < installs[0]):
        raise DefinitionError(
            "domain_join joins the Windows that a windows_install step installs: put a "
            "windows_install before it",
            path=f"tasks[{joins[0]}].type",
        )
    if len(joins) > 1:
        raise DefinitionError("a workflow joins one domain", path=f"tasks[{joins[1]}].type")
    if not installs:
        return
    boots = [i for i, t in enumerate(tasks) if t["type"] == "pxe_boot"]
    if not boots or boots[0] > installs[0]:
        raise DefinitionError(
            "windows_install runs Windows Setup from a Windows boot image: put a pxe_boot "
            "naming it (boot_image, from manage.py import_iso) before this step",
            path=f"tasks[{installs[0]}].type",
        )
    if not tasks[boots[0]]["boot_image"]:
        raise DefinitionError(
            "a Windows install boots a boot image imported with manage.py import_iso (WinPE "
            "through wimboot), not a kernel and initrd: name it in boot_image",
            path=f"tasks[{boots[0]}].boot_image",
        )
