"""Save-time checks of a Windows workflow against what is imported and stored.

A workflow with a ``windows_install`` step is refused when it is saved, not
when a node boots, if its pxe_boot names a boot image that is not Windows,
wimboot (which boots WinPE over the network) is not imported, the edition is
not in the image's install.wim, or a credential it names is missing or of
another kind. The sample ``windows`` and ``join`` contexts with which the
save-time render runs are built here too (placeholder secrets only).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from credentials.models import Credential, CredentialKind

from .definitions import Definition, DefinitionError
from .domainjoin import join_scope_problem
from .models import BootImage
from .windows_context import PROCESSOR_ARCH

WIMBOOT_RELEASES = "https://github.com/ipxe/wimboot/releases"
SAMPLE_SHARE = "\\\\pureboot.invalid\\pureboot-boot"
SAMPLE_PASSWORD = "SAMPLE-PASSWORD"
SAMPLE_PRODUCT_KEY = "SAMPLE-PRODUCT-KEY"
SAMPLE_ACCOUNT_DATA = "SAMPLE-ACCOUNT-DATA"


def _pxe_boot(definition: Definition) -> tuple[int, dict[str, Any]]:
    """The pxe_boot step before windows_install (workflows.definitions makes sure of it)."""
    return next((i, t) for i, t in enumerate(definition.tasks) if t["type"] == "pxe_boot")


def editions(image: BootImage) -> list[str] | None:
    """The image names in the boot image's install.wim, or None when import_iso did not
    record them (an image imported before it did)."""
    install_wim = (image.files or {}).get("install_wim")
    if not isinstance(install_wim, dict) or not isinstance(install_wim.get("images"), list):
        return None
    return [str(i.get("name")) for i in install_wim["images"] if isinstance(i, dict)]


def check_windows(definition: Definition) -> None:
    """Raise DefinitionError, naming the field, for a Windows step that cannot work."""
    for index, task in enumerate(definition.tasks):
        path = f"tasks[{index}]"
        if task["type"] == "windows_install":
            _check_install(definition, task, path)
            _check_credential(
                task["admin_credential"], CredentialKind.WINDOWS_ADMIN, f"{path}.admin_credential"
            )
            if task["product_key_credential"]:
                _check_credential(
                    task["product_key_credential"],
                    CredentialKind.PRODUCT_KEY,
                    f"{path}.product_key_credential",
                )
        elif task["type"] == "domain_join":
            _check_credential(task["credential"], CredentialKind.DOMAIN_JOIN, f"{path}.credential")
            scope_problem = join_scope_problem(
                Credential.objects.get(name=task["credential"]), task["domain"]
            )
            if scope_problem:
                raise DefinitionError(scope_problem, path=f"{path}.credential")


def _check_install(definition: Definition, task: dict[str, Any], path: str) -> None:
    boot_index, boot = _pxe_boot(definition)
    boot_path = f"tasks[{boot_index}].boot_image"
    image = BootImage.objects.filter(name=boot["boot_image"]).first()
    if image is None:  # check_definition refuses this first; a guard, not a path
        raise DefinitionError(f"no boot image {boot['boot_image']!r} is imported", path=boot_path)
    if image.family != "windows":
        raise DefinitionError(
            f"boot image {image.name!r} holds {image.family} {image.version}; windows_install "
            "boots a Windows boot image (manage.py import_iso with a Windows ISO)",
            path=boot_path,
        )
    wrong = [a for a in definition.arch if image.arch in PROCESSOR_ARCH and a != image.arch]
    if wrong:
        raise DefinitionError(
            f"boot image {image.name!r} is for {image.arch}; this workflow is also for "
            f"{', '.join(wrong)}: limit its arch to {image.arch}",
            path=boot_path,
        )
    if not BootImage.objects.filter(family="wimboot").exists():
        raise DefinitionError(
            "wimboot is not imported: it boots WinPE over the network. Download wimboot from "
            f"{WIMBOOT_RELEASES} and run manage.py import_wimboot /path/to/wimboot",
            path=boot_path,
        )
    if not settings.PUREBOOT_WINDOWS_SHARE:
        raise DefinitionError(
            "PUREBOOT_WINDOWS_SHARE is not set: Windows Setup reads install.wim from the boot "
            "root exported over SMB; export it (manage.py smb_config prints the Samba share) "
            "and set PUREBOOT_WINDOWS_SHARE to its UNC path, e.g. \\\\pureboot\\pureboot-boot",
            path=boot_path,
        )
    names = editions(image)
    if names is None:
        raise DefinitionError(
            f"boot image {image.name!r} has no record of its install.wim editions: re-import "
            f"it with manage.py import_iso PATH_OR_URL --name {image.name} --replace",
            path=f"{path}.edition",
        )
    if task["edition"] not in names:
        listed = "; ".join(repr(n) for n in names) or "none"
        raise DefinitionError(
            f"{task['edition']!r} is not an edition in {image.name!r}'s install.wim; it holds: "
            f"{listed}",
            path=f"{path}.edition",
        )


def _check_credential(name: str, kind: str, path: str) -> None:
    credential = Credential.objects.filter(name=name).first()
    label = CredentialKind(kind).label
    if credential is None:
        raise DefinitionError(
            f"no credential {name!r} is stored: create one of kind {kind} ({label}) first",
            path=path,
        )
    if credential.kind != kind:
        raise DefinitionError(
            f"credential {name!r} is of kind {credential.kind}; this field takes kind {kind} "
            f"({label})",
            path=path,
        )
    if not credential.has_password:
        raise DefinitionError(
            f"credential {name!r} has no password: its password is what this field uses",
            path=path,
        )


def sample_windows(definition: Definition, params: dict[str, Any], firmware: str) -> dict:
    """The ``windows`` context for the save-time render: placeholder secrets, never real ones."""
    boot = next((t for t in definition.tasks if t["type"] == "pxe_boot"), {})
    image = boot.get("boot_image") or "sample-image"
    return {
        "install_share": f"{SAMPLE_SHARE}\\{image}",
        "install_file": "install.wim",
        "arch": PROCESSOR_ARCH.get(definition.arch[0], "amd64"),
        "firmware": "uefi" if firmware == "uefi" else "bios",
        "admin_password": SAMPLE_PASSWORD,
        "product_key": SAMPLE_PRODUCT_KEY if params.get("product_key_credential") else "",
        "share_username": "",
        "share_password": "",
        "drivers": False,
    }


def sample_join(definition: Definition) -> dict | None:
    """The ``join`` context for the save-time render; the account's user name is the stored
    credential's (not a secret), so the checker sees what Setup will get."""
    task = next((t for t in definition.tasks if t["type"] == "domain_join"), None)
    if task is None:
        return None
    join: dict[str, Any] = {"mode": task["mode"], "domain": task["domain"], "ou": task["ou"]}
    if task["mode"] == "offline":
        join["account_data"] = SAMPLE_ACCOUNT_DATA
        return join
    credential = Credential.objects.filter(name=task["credential"]).first()
    join["username"] = credential.username if credential else "sample-join"
    join["password"] = SAMPLE_PASSWORD
    return join
