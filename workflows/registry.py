"""The task-type registry: every step a workflow may contain, with its parameters.

Each task type declares its parameters (type, required or optional, default,
allowed values), where it runs (on the node, or on the controller as a
Celery task) and how it renders (the installer template family that turns it
into files a node is served, if any). Validation, defaults, the API's list
of task types and the docs all come from this table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import partitions
from .configsteps import CONFIG_RUN, check_config_run, config_run_params
from .params import Param, ParamError
from .vmsteps import check_no_wait_for_ip, check_vm_hardware, vm_params
from .windows_params import (
    check_domain_join,
    check_windows_install,
    domain_join_params,
    windows_install_params,
)

NODE = "node"
CONTROLLER = "controller"


@dataclass(frozen=True)
class TaskType:
    """A kind of workflow step."""

    name: str
    description: str
    runs_on: str
    params: tuple[Param, ...] = ()
    renders: str | None = None  # installer family whose templates render this task
    arches: tuple[str, ...] = ()  # empty: any
    firmware: tuple[str, ...] = ()  # empty: any
    # Rules across parameters: takes the cleaned params and the task's path.
    validate: Callable[[dict[str, Any], str], None] | None = None
    # Why nothing runs this type yet (empty: something does). A workflow using
    # it is refused when validated, naming the type, until it is built.
    not_built: str = ""

    def clean(self, raw: dict[str, Any], path: str) -> dict[str, Any]:
        """Validate ``raw`` (without ``type``); return params with defaults applied."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            allowed = ", ".join(known) or "none"
            raise ParamError(
                f"{path}.{unknown[0]}",
                f"unknown parameter for {self.name}; its parameters are: {allowed}",
            )
        out: dict[str, Any] = {}
        for param in self.params:
            here = f"{path}.{param.name}"
            if param.name not in raw or raw[param.name] is None:
                if param.required:
                    raise ParamError(here, f"is required for {self.name}")
                default = param.default
                out[param.name] = list(default) if isinstance(default, list | tuple) else default
                continue
            out[param.name] = param.clean(raw[param.name], here)
        if self.validate:
            self.validate(out, path)
        return out


def _disk_rule(params: dict[str, Any], path: str, field: str = "target") -> None:
    rule = params["target"]
    if rule in ("smallest", "largest"):
        return
    if re.fullmatch(r"serial:[\x21-\x7e]{1,128}", rule) or re.fullmatch(
        r"/dev/[a-z][a-z0-9]{0,31}", rule
    ):
        return
    raise ParamError(f"{path}.{field}", "use smallest, largest, serial:<serial> or /dev/<name>")


def _wipe_disks(params: dict[str, Any], path: str) -> None:
    if len(params["disks"]) > 64:
        raise ParamError(f"{path}.disks", "at most 64 disk rules")
    for index, rule in enumerate(params["disks"]):
        _disk_rule({"target": rule}, path, field=f"disks[{index}]")


def _partition_layout(params: dict[str, Any], path: str) -> None:
    _disk_rule({"target": params["disk"]}, path, field="disk")
    try:
        partitions.parse(params)
    except partitions.LayoutError as exc:
        raise ParamError(f"{path}.{exc.field}", exc.message) from None


def _boot_files(params: dict[str, Any], path: str) -> None:
    """pxe_boot names a boot image (from import_iso), or a kernel and an initrd."""
    if params["boot_image"]:
        return
    for name in ("kernel", "initrd"):
        if not params[name]:
            raise ParamError(f"{path}.{name}", "is required unless boot_image is given")
        relative = params[name].lstrip("/")
        if relative.startswith("boot/files/"):
            # It would be served as /boot/files/boot/files/...: a path that does not exist.
            raise ParamError(
                f"{path}.{name}",
                "is a path under the boot root (PUREBOOT_BOOT_ROOT), which the boot path "
                f"serves as /boot/files/...; write {relative[len('boot/files/') :]!r}",
            )


_OVERLAY_PATH = re.compile(r"(/[A-Za-z0-9._+-]+)+")


def _nfs_root(params: dict[str, Any], path: str) -> None:
    """nfs_root: the folders a node writes are absolute, plain and apart from each other.

    Each is bound from the node's writable export over the read-only root, so
    one inside another would hide it, and the kernel command line carries
    them comma-separated.
    """
    paths = params["overlay"]
    if len(paths) > 16:
        raise ParamError(f"{path}.overlay", "at most 16 folders")
    for index, item in enumerate(paths):
        here = f"{path}.overlay[{index}]"
        if not _OVERLAY_PATH.fullmatch(item) or any(
            part in (".", "..") for part in item.split("/")
        ):
            raise ParamError(
                here, "must be an absolute folder such as /etc: letters, digits, . _ + - and /"
            )
        for other in paths[:index]:
            if item == other:
                raise ParamError(here, f"{item} is listed twice")
            if item.startswith(other + "/") or other.startswith(item + "/"):
                raise ParamError(here, f"{item} and {other} lie inside one another")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,99}", params["root"]):
        raise ParamError(f"{path}.root", "is the name of a root file system (import_rootfs)")


def _installer_params(*extra: Param) -> tuple[Param, ...]:
    return (
        Param("disk", "str", default="", help="Target disk; empty: the installer's choice"),
        Param("layout", "choice", default="lvm", choices=("lvm", "direct")),
        Param("locale", "str", default="en_US.UTF-8", max_length=64),
        Param("keyboard", "str", default="us", max_length=32),
        Param("timezone", "str", default="UTC", max_length=64),
        Param("username", "str", default="pureboot", max_length=32),
        Param("password_hash", "str", default="", help="crypt(3) hash, e.g. $6$…", secret=True),
        Param("root_password_hash", "str", default="", secret=True),
        Param("ssh_keys", "list[str]", default=()),
        Param("packages", "list[str]", default=(), max_length=200),
        Param("post_install", "list[str]", default=()),
        Param("mirror", "str", default="", help="Package mirror; empty: distribution default"),
        *extra,
    )


TASK_TYPES: dict[str, TaskType] = {
    t.name: t
    for t in (
        TaskType(
            "pxe_boot",
            "Boot a kernel and initrd over the network",
            NODE,
            (
                Param(
                    "bootloader",
                    "choice",
                    default="ipxe",
                    choices=("ipxe", "grub", "pxelinux", "systemd-boot"),
                ),
                Param("kernel", "str", default=""),
                Param("initrd", "str", default=""),
                Param("cmdline", "str", default=""),
                Param(
                    "boot_image",
                    "str",
                    default="",
                    max_length=100,
                    help="A boot image registered by import_iso (its kernel and initrd)",
                ),
            ),
            validate=_boot_files,
        ),
        TaskType(
            "image_deploy",
            "Write an OS image to disk: a block image, or a file-level one onto the partition "
            "step's layout (the PureBoot agent)",
            NODE,
            (
                Param("image", "str", required=True, max_length=100, help="An image template"),
                Param("version", "int", default=0, minimum=0, help="0: the latest version"),
                Param(
                    "target",
                    "str",
                    default="smallest",
                    max_length=140,
                    help="The disk (block images; a file-level image goes on the partition "
                    "step's disk): smallest, largest, serial:<serial> or /dev/<name>",
                ),
                Param("ssh_keys", "list[str]", default=(), help="SSH public keys for first boot"),
                Param(
                    "network",
                    "choice",
                    default="dhcp",
                    choices=("dhcp", "keep"),
                    help="dhcp: the deployed system asks its network's DHCP; keep: it keeps "
                    "the address the agent was given, statically",
                ),
            ),
            validate=_disk_rule,
        ),
        TaskType(
            "disk_wipe",
            "Securely erase disks before the image is written (the PureBoot agent)",
            NODE,
            (
                Param(
                    "category",
                    "choice",
                    default="best",
                    choices=("best", "clear", "purge"),
                    help="NIST SP 800-88: best (Purge where the disk can, else Clear), clear, "
                    "or purge (a disk without a Purge command fails the install)",
                ),
                Param("passes", "int", default=1, minimum=1, maximum=35, help="overwrite passes"),
                Param(
                    "disks",
                    "list[str]",
                    default=(),
                    help="Disk rules (smallest, largest, serial:<serial>, /dev/<name>); "
                    "empty: every disk",
                ),
            ),
            validate=_wipe_disks,
        ),
        TaskType(
            "partition",
            "Lay out a disk's partitions for a file-level image (the PureBoot agent)",
            NODE,
            (
                Param(
                    "disk",
                    "str",
                    default="smallest",
                    max_length=140,
                    help="The disk: smallest, largest, serial:<serial> or /dev/<name>",
                ),
                Param("table", "choice", default="gpt", choices=("gpt", "msdos")),
                Param(
                    "layout",
                    "choice",
                    default="direct",
                    choices=("direct", "lvm", "custom"),
                    help="direct: plain partitions (lvm and custom are not built yet)",
                ),
                Param(
                    "partitions",
                    "list[dict]",
                    default=(),
                    help="[{role: esp|boot|root|swap|data, size: 512M|20G|rest, fs, mount, label}]",
                ),
            ),
            validate=_partition_layout,
        ),
        TaskType(
            "nfs_root",
            "Boot a diskless machine from a read-only NFS root file system with a writable "
            "per-node overlay (nfs-ganesha)",
            NODE,
            (
                Param(
                    "root",
                    "str",
                    required=True,
                    max_length=100,
                    help="A root file system template (manage.py import_rootfs)",
                ),
                Param(
                    "overlay",
                    "list[str]",
                    default=("/etc", "/var", "/home"),
                    max_length=200,
                    help="Folders the node writes: its own copy, seeded from the template",
                ),
            ),
            validate=_nfs_root,
        ),
        TaskType(
            "domain_join",
            "Join the Windows install before it to an Active Directory domain (its unattend)",
            NODE,
            domain_join_params(),
            validate=check_domain_join,
        ),
        TaskType(
            "script_run",
            "Run a script on the node",
            NODE,
            (
                Param("script", "str", required=True, max_length=65536),
                Param(
                    "interpreter",
                    "choice",
                    default="bash",
                    choices=("bash", "sh", "powershell", "python"),
                ),
                Param("args", "list[str]", default=()),
            ),
        ),
        TaskType(
            "package_install",
            "Install packages",
            NODE,
            (
                Param("packages", "list[str]", required=True, max_length=200),
                Param(
                    "manager",
                    "choice",
                    default="auto",
                    choices=("auto", "apt", "dnf", "yum", "pacman", "choco", "winget"),
                ),
            ),
        ),
        TaskType(
            "reboot",
            "Restart the machine",
            NODE,
            (Param("delay", "int", default=0, minimum=0, maximum=3600),),
            not_built="installers restart the machine themselves when they finish; a "
            "separate reboot step is not run",
        ),
        TaskType(
            "chain_boot",
            "Hand over to another boot loader or the local disk",
            NODE,
            (
                Param(
                    "method",
                    "choice",
                    default="exit",
                    choices=("exit", "sanboot", "localboot", "grub"),
                ),
                Param("target", "str", default=""),
            ),
            not_built="the boot path does not read it: installed machines boot their local "
            "disk, and nothing hands over to another boot loader yet",
        ),
        TaskType(
            "ubuntu_autoinstall",
            "Ubuntu Server autoinstall (subiquity), served as NoCloud",
            NODE,
            _installer_params(),
            renders="ubuntu_autoinstall",
        ),
        TaskType(
            "debian_preseed",
            "Debian installer preseed",
            NODE,
            _installer_params(Param("suite", "str", default="bookworm", max_length=32)),
            renders="debian_preseed",
        ),
        TaskType(
            "kickstart",
            "Anaconda kickstart for Fedora, Rocky Linux and AlmaLinux",
            NODE,
            _installer_params(
                Param("distro", "choice", required=True, choices=("fedora", "rocky", "alma")),
                Param("version", "str", required=True, max_length=16),
                Param("repo_url", "str", required=True, help="Install tree URL"),
            ),
            renders="kickstart",
        ),
        TaskType(
            "arch_bootstrap",
            "Arch Linux bootstrap script (pacstrap)",
            NODE,
            _installer_params(),
            renders="arch_bootstrap",
            arches=("x86_64", "aarch64"),
        ),
        TaskType(
            "raspberrypi_os",
            "Raspberry Pi OS first-boot configuration",
            NODE,
            _installer_params(),
            renders="raspberrypi_os",
            arches=("aarch64", "armhf"),
            firmware=("pi",),
        ),
        TaskType(
            "cloud_init",
            "cloud-init configuration for VMs",
            NODE,
            _installer_params(Param("user_data", "dict", default={})),
            renders="cloud_init",
        ),
        TaskType(
            "windows_install",
            "Windows Setup from a Windows boot image (WinPE), answered by autounattend.xml",
            NODE,
            windows_install_params(),
            renders="windows_install",
            # wimboot is loaded by iPXE, which PureBoot boots on x86 only (ARM64 gets GRUB).
            arches=("x86_64",),
            firmware=("bios", "uefi"),
            validate=check_windows_install,
        ),
        TaskType(
            "vm_create",
            "Create the node's VM on a hypervisor, network boot first, and power it on",
            CONTROLLER,
            vm_params(""),
            validate=check_vm_hardware,
        ),
        TaskType(
            "ovirt_vm_create",
            "Create the node's VM on oVirt/RHV (vm_create on an oVirt hypervisor)",
            CONTROLLER,
            vm_params("Default"),
            validate=check_vm_hardware,
        ),
        TaskType(
            "ovirt_vm_start",
            "Power the oVirt/RHV VM on once created (vm_create does unless power_on: false)",
            CONTROLLER,
            (Param("wait_for_ip", "bool", default=False),),
            validate=check_no_wait_for_ip,
        ),
        TaskType(
            "ovirt_vm_configure",
            "Configure an oVirt/RHV VM (cloud-init)",
            CONTROLLER,
            (Param("cloud_init", "dict", default={}),),
            not_built="PureBoot does not pass cloud-init to oVirt: the VM network-boots and "
            "its installer step (cloud_init, ubuntu_autoinstall, ...) configures it",
        ),
        TaskType(
            "template_sync",
            "Synchronise image templates with a hypervisor",
            CONTROLLER,
            (
                Param("hypervisor", "str", default=""),
                Param("templates", "list[str]", default=()),
            ),
            not_built="templates are synced with POST /api/v1/templates/sync and on each "
            "hypervisor's sync interval, not as a step of one node's install",
        ),
        TaskType(
            "live_migrate",
            "Live-migrate a VM between hosts",
            CONTROLLER,
            (
                Param("target_host", "str", default=""),
                Param("hypervisor", "str", default=""),
            ),
            not_built="a running VM is moved with POST /api/v1/vms/{id}/migrate, not as a step "
            "of its install",
        ),
        TaskType(
            CONFIG_RUN,
            "After the node reports installed: an Ansible playbook over SSH or a Salt state "
            "through salt-api, run by the controller's worker",
            CONTROLLER,
            config_run_params(),
            validate=check_config_run,
        ),
    )
}

INSTALLER_TYPES = tuple(name for name, t in TASK_TYPES.items() if t.renders)


REDACTED = "[redacted]"


def secret_values(tasks: list[dict[str, Any]]) -> list[str]:
    """The non-empty values of secret parameters in ``tasks``."""
    values = []
    for task in tasks:
        task_type = TASK_TYPES.get(task.get("type"))
        for param in task_type.params if task_type else ():
            if param.secret and task.get(param.name):
                values.append(str(task[param.name]))
    return values


def redact_tasks(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of ``tasks`` with secret parameter values replaced by a marker."""
    out = []
    for task in tasks:
        task_type = TASK_TYPES.get(task.get("type"))
        secret = {p.name for p in (task_type.params if task_type else ()) if p.secret}
        out.append({k: (REDACTED if k in secret and v else v) for k, v in task.items()})
    return out


def redact_text(text: str, values: list[str]) -> str:
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text
