"""How a network-booted installer reaches its media: one table, read twice.

A kernel and an initrd are only the first step of a network install: the
initrd must then find the rest of the installer. Ubuntu's live-server
initrd (casper) downloads the whole ISO it was cut from (``url=``); Arch's
(archiso) fetches its root file system from ``archiso_http_srv=``;
Anaconda's dracut fetches its runtime image from ``inst.stage2=`` (else
from ``inst.repo=``); the Debian installer's netboot initrd carries its
components and reads the rest from the mirror its preseed names. (The
initrd of a Debian netinst or DVD ISO is the CD flavour: netbooted, it stops
at "No common CD-ROM drive was detected", Debian bug 724931. A Debian
network install needs the netboot flavour, which ``import_iso`` takes from
Debian's ``netboot.tar.gz`` or ``mini.iso``; a ``debian_preseed`` install
naming a CD-flavour boot image is refused at save, see debian_flavour().)

``import_iso`` keeps those files beside the kernel (roles ``iso``,
``rootfs``, ``stage2``), so an imported boot image is a whole installer
that PureBoot serves. This module says, per boot-image family, which file
the initrd needs and which command-line arguments point it there. It is
read at boot (``bootserve.install`` adds the arguments) and at save
(``workflows.checks`` refuses a workflow whose boot image cannot carry its
installer to its media), so the two cannot disagree.

As on MAAS and Foreman, the operator names an installation medium (a boot
image) and the controller writes the command line. A workflow that gives a
kernel and initrd as raw paths instead is taken at its word: PureBoot cannot
see into an initrd it did not import (it may embed its media), so it only
warns when the argument that names the media is missing, and the operator
names it in ``cmdline`` (``url=`` for Ubuntu, ``archiso_http_srv=`` for
Arch) as the distribution documents. Arguments the operator writes in
``cmdline`` always win over the ones PureBoot would add.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The boot-image families (``BootImage.family``) each installer task can boot.
INSTALLER_FAMILIES: dict[str, tuple[str, ...]] = {
    "ubuntu_autoinstall": ("ubuntu",),
    "debian_preseed": ("debian",),
    "kickstart": ("fedora", "rocky", "alma"),
    "arch_bootstrap": ("arch",),
}


@dataclass(frozen=True)
class Media:
    """What one installer family's initrd must fetch before it can install.

    ``role`` is the boot-image file it fetches (from ``import_iso``'s role
    table); ``keys`` the command-line arguments by which an operator may
    name the media himself instead; ``how`` says it for an operator.
    """

    role: str
    keys: tuple[str, ...]
    how: str


# Installers whose initrd cannot install without the file; kickstart is not
# here because Anaconda falls back to the runtime image of inst.repo.
REQUIRED_MEDIA: dict[str, Media] = {
    "ubuntu_autoinstall": Media(
        "iso",
        ("url",),
        "the Ubuntu live-server initrd downloads the whole ISO it installs from (url=)",
    ),
    "arch_bootstrap": Media(
        "rootfs",
        ("archiso_http_srv", "archiso_nfs_srv", "archiso_nbd_srv"),
        "archiso fetches its root file system (archiso_http_srv=<folder>, then "
        "arch/x86_64/airootfs.sfs below it)",
    ),
}


def arg_key(arg: str) -> str:
    """The name a kernel argument sets: ``url`` for ``url=http://...``, itself for a flag."""
    return arg.split("=", 1)[0]


def cmdline_keys(cmdline: str) -> set[str]:
    return {arg_key(arg) for arg in cmdline.split()}


def media_args(family: str, files: Mapping[str, Any], folder_url: str) -> list[str]:
    """The arguments that point a ``family`` boot image's initrd at its media.

    ``files`` is the image's ``BootImage.files``; ``folder_url`` the URL of
    its folder, ending in ``/`` (``<base>/boot/files/<image>/``). Empty when
    the family needs none, or the image lacks the file (imported before
    PureBoot kept it: the save-time check asks for a re-import).
    """

    def url(role: str) -> str:
        return folder_url + files[role]["name"]

    if family == "ubuntu" and "iso" in files:
        # cloud-init also reads url= (as a cloud-config URL) and would download
        # the ISO a second time: /dev/null stops it (Ubuntu's netboot guide).
        return ["ip=dhcp", "cloud-config-url=/dev/null", f"url={url('iso')}"]
    if family == "arch" and "rootfs" in files:
        args = ["ip=dhcp", f"archiso_http_srv={folder_url}", "archisobasedir=arch"]
        # archiso then fetches airootfs.sha512 too, and checks the root file system.
        return args + (["checksum=y"] if "rootfs_sha512" in files else [])
    if family in ("fedora", "rocky", "alma") and "stage2" in files:
        # The runtime image of the same build as this kernel and initrd, whatever
        # release inst.repo (the packages) serves.
        return ["ip=dhcp", f"inst.stage2={folder_url}"]
    return []


def merge_args(operator: str, *ours: Iterable[str]) -> str:
    """The operator's ``cmdline`` followed by PureBoot's arguments, without repeats.

    An argument of ours whose name the operator (or an earlier one of ours)
    already set is left out: the operator's choice wins, and ``ip=dhcp``
    appears once.
    """
    seen = cmdline_keys(operator)
    out = [operator.strip()] if operator.strip() else []
    for group in ours:
        for arg in group:
            key = arg_key(arg)
            if arg and key not in seen:
                seen.add(key)
                out.append(arg)
    return " ".join(out)


@dataclass(frozen=True)
class MediaProblem:
    """Why an install boot cannot reach its media: ``field`` of the pxe_boot task
    to fix; ``refuse`` when PureBoot knows the install cannot work."""

    message: str
    field: str
    refuse: bool


# Where Debian publishes the netboot flavour of its installer, per architecture;
# SHA256SUMS in the images/ folder above it lists its SHA-256.
NETBOOT_TAR_URL = (
    "https://deb.debian.org/debian/dists/{suite}/main/installer-{debarch}/current/images/"
    "netboot/netboot.tar.gz"
)
_DEBARCH = {"x86_64": "amd64", "aarch64": "arm64"}
_CD_INITRD = {"x86_64": "install.amd/initrd.gz", "aarch64": "install.a64/initrd.gz"}


def debian_flavour(image: Any) -> str | None:
    """Which debian-installer a ``debian`` boot image holds: "cd", "netboot", or None
    when nothing recorded says.

    ``import_iso`` records it beside each boot file ("flavour"). An image
    imported before it did (no "flavour") but with a source or a volume id was
    imported from an ISO by ``import_iso``, which then recognised Debian media
    only by the CD layout of netinst and DVD ISOs (install.amd/, install.a64/):
    the CD flavour. A row with neither (made by hand) is not judged.
    """
    initrd = (image.files or {}).get("initrd") or {}
    if initrd.get("flavour"):
        return str(initrd["flavour"])
    if image.source or image.volume_id:
        return "cd"
    return None


def _debian_cd_problem(task: Mapping[str, Any], image: Any) -> MediaProblem:
    initrd = ((image.files or {}).get("initrd") or {}).get("from") or _CD_INITRD.get(
        image.arch, "install.amd/initrd.gz"
    )
    url = NETBOOT_TAR_URL.format(
        suite=task.get("suite") or "bookworm", debarch=_DEBARCH.get(image.arch, "amd64")
    )
    return MediaProblem(
        f"boot image {image.name!r} is Debian's CD installer ({initrd.lstrip('/')}), which "
        'cannot install over the network: netbooted, it stops at "No common CD-ROM drive '
        "was detected\" (Debian bug 724931); import Debian's netboot.tar.gz with "
        f"manage.py import_iso {url} --sha256 <its SHA-256, from SHA256SUMS in images/> "
        "and name the boot image it registers here",
        "boot_image",
        refuse=True,
    )


def media_problem(
    task: Mapping[str, Any], *, cmdline: str, image: Any | None
) -> MediaProblem | None:
    """Why a pxe_boot for the installer ``task`` cannot reach its media, or None.

    ``image`` is the named BootImage (None for raw kernel/initrd paths). A
    boot image of another distribution, one that lacks the file its initrd
    fetches, or Debian's CD installer for a Debian install, is a refusal. Raw
    paths without the argument that names the media are a warning: the
    initrd may carry its media.
    """
    installer = task["type"]
    families = INSTALLER_FAMILIES.get(installer)
    if families is None:
        return None
    if installer == "kickstart":
        families = (task["distro"],)
    media = REQUIRED_MEDIA.get(installer)
    named = media is not None and bool(cmdline_keys(cmdline) & set(media.keys))
    if image is None:
        if media is None or named:
            return None
        return MediaProblem(
            f"{media.how}, and cmdline names none ({', '.join(k + '=' for k in media.keys)}): "
            "name a boot image imported with manage.py import_iso instead of raw kernel and "
            f"initrd paths, or add {media.keys[0]}= to cmdline",
            "cmdline",
            refuse=False,
        )
    if image.family not in families:
        return MediaProblem(
            f"boot image {image.name!r} holds {image.family} {image.version}; a {installer} "
            f"install boots {' or '.join(families)} media",
            "boot_image",
            refuse=True,
        )
    if installer == "debian_preseed" and debian_flavour(image) == "cd":
        return _debian_cd_problem(task, image)
    if media is not None and not named and media.role not in image.files:
        source = " from an Ubuntu live-server ISO" if installer == "ubuntu_autoinstall" else ""
        return MediaProblem(
            f"boot image {image.name!r} lacks the file its installer fetches at boot "
            f"({media.how}): re-import it{source} with manage.py import_iso PATH_OR_URL "
            f"--name {image.name} --replace",
            "boot_image",
            refuse=True,
        )
    return None
