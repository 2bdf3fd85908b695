"""Check a workflow's installer config at save time, with the distribution's own tool.

The installer task is rendered for a sample node of the hardware the workflow
applies to and handed to the same checker the preview uses. A workflow whose
kickstart pykickstart rejects is refused when it is saved, not twenty
minutes into an install. So is a network boot whose initrd could not reach
the rest of its installer (an Ubuntu boot image without its ISO, Debian's CD
installer from a netinst ISO instead of its netboot.tar.gz). A Windows
install is also checked against its boot image, wimboot and the credential
store (workflows.windows_checks), and its unattend rendered for each firmware.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import QuerySet

from .definitions import Definition, DefinitionError
from .installer_media import media_problem
from .registry import TASK_TYPES
from .rootfs import check_task as check_nfs_root
from .windows_checks import check_windows, sample_join, sample_windows

SAMPLE_MAC = "52:54:00:00:00:01"


@dataclass
class CheckResult:
    warnings: list[str] = field(default_factory=list)


def _sample_context(definition: Definition, params: dict, firmware: str = "") -> dict:
    arch = definition.arch[0]
    firmware = firmware or (
        "pi"
        if "pi" in definition.firmware and arch != "x86_64"
        else next((f for f in definition.firmware if f != "pi"), definition.firmware[0])
    )
    return {
        "node": {
            "id": 0,
            "hostname": "sample-node",
            "domain": "",
            "arch": arch,
            "firmware": firmware,
            "serial": "",
            "system_uuid": None,
            "vendor": "",
            "model": "",
            "site": None,
            "interfaces": [{"mac": SAMPLE_MAC, "name": "eth0", "is_primary": True}],
            "primary_mac": SAMPLE_MAC,
            "metadata": {},
        },
        "params": params,
        "install": {
            "report_url": "http://pureboot.invalid/api/v1/report",
            "token": "SAMPLE-TOKEN",
            "config_url": "http://pureboot.invalid/api/v1/install/SAMPLE-TOKEN/",
        },
        # windows_install's (workflows.windows_context in an install): placeholder secrets.
        "windows": sample_windows(definition, params, firmware),
        "join": sample_join(definition),
    }


def _check_deployable(definition: Definition, task: dict, index: int) -> None:
    from .images import DeployImpossible, deployable_version

    try:
        version = deployable_version(task)
    except DeployImpossible as exc:
        raise DefinitionError(f"{exc}: upload it first", path=f"tasks[{index}].image") from None
    if version.arch and version.arch not in definition.arch:
        raise DefinitionError(
            f"{version} is for {version.arch}; this workflow is for {', '.join(definition.arch)}",
            path=f"tasks[{index}].image",
        )
    layout = next((t for t in definition.tasks if t["type"] == "partition"), None)
    if version.template.kind == "block" and layout is not None:
        raise DefinitionError(
            f"{version} is a block image: it carries its own partition table; remove the "
            "partition step",
            path=f"tasks[{index}].image",
        )
    if version.template.kind == "file":
        if layout is None:
            raise DefinitionError(
                f"{version} is a file-level image: add a partition step before it that lays "
                "out the disk (at least an esp and a root partition)",
                path=f"tasks[{index}].image",
            )
        if not any(p.get("role") == "esp" for p in layout["partitions"]):
            raise DefinitionError(
                f"{version} is a file-level image, and PureBoot installs no boot loader: the "
                "image boots by the UEFI loader it brings in /boot/efi, so the layout needs an "
                "esp partition",
                path=f"tasks[{index}].image",
            )


def _check_media(definition: Definition, result: CheckResult, images: QuerySet) -> None:
    """Refuse a network install whose boot image cannot carry its installer to its
    media (another distribution's image, or one without the ISO or root file
    system its initrd fetches); warn when raw kernel/initrd paths do not name it.

    ``images`` is the BootImage queryset (passed in: models load after this module).
    """
    installer = next((t for t in definition.tasks if TASK_TYPES[t["type"]].renders), None)
    if installer is None:
        return
    for index, task in enumerate(definition.tasks):
        if task["type"] != "pxe_boot":
            continue
        image = images.filter(name=task["boot_image"]).first() if task["boot_image"] else None
        problem = media_problem(installer, cmdline=task.get("cmdline", ""), image=image)
        if problem is None:
            continue
        path = f"tasks[{index}].{problem.field}"
        if problem.refuse:
            raise DefinitionError(problem.message, path=path)
        result.warnings.append(f"{path}: {problem.message}")


def check_definition(definition: Definition) -> CheckResult:
    """Raise DefinitionError when the installer config fails its checker, or its
    network boot cannot reach the installer's media (workflows.installer_media).

    A checker that is not installed on this machine is not a pass: it comes
    back as a warning naming the missing tool.
    """
    from .installer_checks import ToolMissing, check_installer
    from .models import BootImage
    from .rendering import RenderError, render_installer

    result = CheckResult()
    for index, task in enumerate(definition.tasks):
        if task["type"] == "image_deploy":
            _check_deployable(definition, task, index)
        if task["type"] == "nfs_root":
            check_nfs_root(definition, task, index)
        image = task.get("boot_image") if task["type"] == "pxe_boot" else None
        if image and not BootImage.objects.filter(name=image).exists():
            raise DefinitionError(
                f"no boot image {image!r} is imported: import it first "
                f"(manage.py import_iso PATH_OR_URL --name {image}); a node would otherwise "
                "start an install it cannot boot",
                path=f"tasks[{index}].boot_image",
            )
    check_windows(definition)
    _check_media(definition, result, BootImage.objects.all())
    for index, task in enumerate(definition.tasks):
        if not TASK_TYPES[task["type"]].renders:
            continue
        path = f"tasks[{index}]"
        params = {k: v for k, v in task.items() if k != "type"}
        # Windows' unattend differs per firmware (its disk layout): check each one.
        firmwares = definition.firmware if task["type"] == "windows_install" else ("",)
        for firmware in firmwares:
            try:
                files = render_installer(
                    task["type"], _sample_context(definition, params, firmware)
                )
            except RenderError as exc:
                raise DefinitionError(
                    f"cannot render the installer config: {exc}", path=path
                ) from None
            try:
                problems = check_installer(task["type"], files)
            except ToolMissing as exc:
                result.warnings.append(f"{path}: not checked: {exc}")
                break
            if problems:
                raise DefinitionError(
                    f"{task['type']} config refused by its checker: " + "; ".join(problems[:5]),
                    path=path,
                )
    return result
