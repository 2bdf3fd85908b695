"""What an install boot is: kernel, initrd and command line from the pinned workflow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workflows.installer_media import media_args, merge_args
from workflows.models import BootImage, WorkflowVersion
from workflows.registry import TASK_TYPES

from . import nfsroot


@dataclass(frozen=True)
class WimbootFile:
    """One file iPXE hands wimboot: the name wimboot sees, and where iPXE fetches it.

    ``firmware``: only on this firmware ("bios": bootmgr; "uefi": the EFI boot
    manager), "" on both. ``per_node``: one of the node's own install files
    (/api/v1/install/<token>/...), which may not be ready yet (an offline
    domain join still being provisioned): iPXE retries, it does not give up.
    """

    name: str
    url: str
    firmware: str = ""
    per_node: bool = False


@dataclass(frozen=True)
class InstallBoot:
    """Kernel and initrd as URLs (iPXE, PXELINUX, GRUB) and the kernel command line.

    ``kernel_file``/``initrd_file`` are the same files as paths under the boot
    root, for clients that fetch over TFTP only (a Raspberry Pi's firmware);
    None when the workflow names an external URL.

    A Windows install boots wimboot (``kernel``) with ``wimboot_files``
    instead of an initrd; only iPXE can load it.
    """

    kernel: str
    initrd: str
    cmdline: str
    kernel_file: str | None = None
    initrd_file: str | None = None
    wimboot_files: tuple[WimbootFile, ...] = ()


#: BootImage families: Windows media (import_iso) and wimboot (import_wimboot).
WINDOWS_FAMILY = "windows"
WIMBOOT_FAMILY = "wimboot"
#: What PXELINUX and GRUB say to a Windows install: they cannot load wimboot.
WIMBOOT_ONLY = (
    "Windows Setup boots through iPXE (wimboot), and this machine booted another loader; "
    "booting the local disk"
)
#: The per-node files a Windows install injects into WinPE (templates/installers/windows_install).
WINDOWS_NODE_FILES = ("winpeshl.ini", "pureboot.cmd", "autounattend.xml")
# Boot files of a Windows image, in the order iPXE fetches them: (role, wimboot name, firmware).
_WINDOWS_BOOT_FILES = (
    ("bootmgr", "bootmgr", "bios"),
    ("bootmgr_efi", "bootmgfw.efi", "uefi"),
    ("bcd", "BCD", ""),
    ("boot_sdi", "boot.sdi", ""),
    ("boot_wim", "boot.wim", ""),
)


def wimboot_image() -> BootImage | None:
    """The imported wimboot (``manage.py import_wimboot``), newest first."""
    return BootImage.objects.filter(family=WIMBOOT_FAMILY).order_by("-created_at", "-id").first()


def windows_boot(image: BootImage, *, token: str, base_url: str) -> InstallBoot | None:
    """wimboot with the image's boot files and the node's own files; None without wimboot."""
    wimboot = wimboot_image()
    if wimboot is None:
        return None
    files = [
        WimbootFile(name, _file_url(base_url, f"{image.name}/{image.files[role]['name']}"), fw)
        for role, name, fw in _WINDOWS_BOOT_FILES
        if role in image.files
    ]
    config_url = f"{base_url}/api/v1/install/{token}/"
    files += [WimbootFile(name, config_url + name, per_node=True) for name in WINDOWS_NODE_FILES]
    name = wimboot.files.get("wimboot", {}).get("name", "wimboot")
    return InstallBoot(
        kernel=_file_url(base_url, f"{wimboot.name}/{name}"),
        initrd="",
        cmdline="",
        kernel_file=f"{wimboot.name}/{name}",
        wimboot_files=tuple(files),
    )


def boot_task(version: WorkflowVersion | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return pxe_boot_task(version.definition)


NETWORK_BOOT_TASKS = ("pxe_boot", "image_deploy", "nfs_root")


def pxe_boot_task(definition: dict[str, Any]) -> dict[str, Any] | None:
    """The network install boot of a version's definition, if any: its pxe_boot task,
    or its image_deploy task (the install boot is then the PureBoot agent)."""
    return next((t for t in definition.get("tasks", []) if t["type"] in NETWORK_BOOT_TASKS), None)


def is_diskless_task(task: dict[str, Any] | None) -> bool:
    """Whether a network boot task boots an NFS root: the node has no disk to boot."""
    return task is not None and task["type"] == "nfs_root"


def _is_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def _file_url(base_url: str, path: str) -> str:
    if _is_url(path):
        return path
    return f"{base_url}/boot/files/{path.lstrip('/')}"


def _boot_root_path(path: str) -> str | None:
    """``path`` relative to the boot root, or None for an external URL."""
    return None if _is_url(path) or not path.strip("/") else path.lstrip("/")


def _installer_args(version: WorkflowVersion, hostname: str, config_url: str) -> list[str]:
    """The arguments that hand the installer its per-node config (``config_url``)."""
    task = next((t for t in version.tasks if TASK_TYPES[t["type"]].renders), None)
    if task is None:
        return []
    name, _, domain = hostname.partition(".")
    kind = task["type"]
    if kind in ("ubuntu_autoinstall", "cloud_init"):
        args = [f"ds=nocloud-net;s={config_url}"]
        return (["autoinstall"] if kind == "ubuntu_autoinstall" else []) + args
    if kind == "debian_preseed":
        return [
            "auto=true",
            "priority=critical",
            f"url={config_url}preseed.cfg",
            f"hostname={name}",
            f"domain={domain}",
            "interface=auto",
        ]
    if kind == "kickstart":
        return [f"inst.ks={config_url}ks.cfg", f"inst.repo={task['repo_url']}", "ip=dhcp"]
    if kind == "arch_bootstrap":
        return [f"script={config_url}bootstrap.sh"]
    return []


def install_boot(
    version: WorkflowVersion, *, hostname: str, token: str, base_url: str
) -> InstallBoot | None:
    """The install boot for a node with this pinned version, or None if it has none.

    The command line is the task's ``cmdline``, then what a named boot image's
    initrd needs to reach the rest of its installer, served from the image's
    folder (an Ubuntu ISO's ``url=``, Arch's ``archiso_http_srv=``,
    Anaconda's ``inst.stage2=``: workflows.installer_media), then the
    installer's per-node config URL. An argument the task's ``cmdline``
    already sets is not repeated: the operator's wins.
    """
    task = boot_task(version)
    if task is None or task["type"] != "pxe_boot":
        return None
    kernel, initrd = task.get("kernel", ""), task.get("initrd", "")
    media: list[str] = []
    if task.get("boot_image"):
        image = BootImage.objects.filter(name=task["boot_image"]).first()
        if image is None:
            return None
        if image.family == WINDOWS_FAMILY:
            return windows_boot(image, token=token, base_url=base_url)
        files = image.files
        kernel = f"{image.name}/{files.get('kernel', {}).get('name', 'vmlinuz')}"
        initrd = f"{image.name}/{files.get('initrd', {}).get('name', 'initrd')}"
        media = media_args(image.family, files, _file_url(base_url, f"{image.name}/"))
    config_url = f"{base_url}/api/v1/install/{token}/"
    cmdline = merge_args(
        task.get("cmdline", ""), media, _installer_args(version, hostname, config_url)
    )
    return InstallBoot(
        kernel=_file_url(base_url, kernel),
        initrd=_file_url(base_url, initrd),
        cmdline=cmdline,
        kernel_file=_boot_root_path(kernel),
        initrd_file=_boot_root_path(initrd),
    )


AGENT_FAMILY = "pureboot-agent"


def agent_image(arch: str) -> BootImage | None:
    """The newest imported agent boot image for ``arch`` (``manage.py build_agent``)."""
    return (
        BootImage.objects.filter(family=AGENT_FAMILY, arch=arch)
        .order_by("-created_at", "-id")
        .first()
    )


def agent_boot(node, *, token: str, base_url: str) -> InstallBoot | None:
    """The PureBoot agent's boot for ``node``: its token and the controller on the command line."""
    image = agent_image(node.arch)
    if image is None:
        return None
    kernel = f"{image.name}/{image.files.get('kernel', {}).get('name', 'vmlinuz')}"
    initrd = f"{image.name}/{image.files.get('initrd', {}).get('name', 'initrd.img')}"
    args = [
        "console=tty0",
        "console=ttyS0,115200n8" if node.arch == "x86_64" else "console=ttyAMA0,115200",
        "quiet",
        f"pureboot.url={base_url}",
        f"pureboot.node={node.pk}",
        f"pureboot.token={token}",
    ]
    return InstallBoot(
        kernel=_file_url(base_url, kernel),
        initrd=_file_url(base_url, initrd),
        cmdline=" ".join(args),
        kernel_file=_boot_root_path(kernel),
        initrd_file=_boot_root_path(initrd),
    )


def node_install_boot(node, *, token: str, base_url: str) -> InstallBoot | None:
    """``install_boot`` for a node: its pinned version, its hostname (or ``node-<id>``)."""
    if node.workflow_version is None:
        return None
    task = boot_task(node.workflow_version)
    if task is not None and task["type"] == "image_deploy":
        return agent_boot(node, token=token, base_url=base_url)
    if task is not None and task["type"] == "nfs_root":
        # A diskless node boots its NFS root (bootserve.nfsroot), now and whenever it boots.
        files = nfsroot.node_boot(node, task, token=token, base_url=base_url)
        if files is None:
            return None
        kernel, initrd, cmdline = files
        return InstallBoot(
            _file_url(base_url, kernel), _file_url(base_url, initrd), cmdline, kernel, initrd
        )
    return install_boot(
        node.workflow_version,
        hostname=node.hostname or f"node-{node.pk}",
        token=token,
        base_url=base_url,
    )
