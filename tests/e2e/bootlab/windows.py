"""Windows media and workflows for the boot lab's wimboot cells.

The ISO has the layout ``manage.py import_iso`` recognises as Windows
(workflows/isoimport/detect.py ``_windows``), its names in UDF only as on
Microsoft's media: ``/sources/boot.wim`` and ``/sources/install.wim`` are real
WIMs written by ``wimlib-imagex`` (install.wim holds two editions with the
EDITIONID and ARCH properties Microsoft's carry); ``/bootmgr``, the EFI boot
manager, the BCD and ``boot.sdi`` are small stand-in files. No Windows can run
on these machines, so nothing past wimboot's start is real.

Also the two calls ``Lab.api`` cannot make: a save that must be refused (its
400 body), and a node's report with its token (what WinPE's ``pureboot.cmd``
and the first-logon commands send).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.workflows.isofactory import build_iso

from .artifacts import run, tool
from .lab import BASE, Lab

BUILD = "22621"
IMAGE_NAME = f"windows-{BUILD}-x86_64"  # the name import_iso derives
EDITIONS = ("Windows 11 Pro", "Windows 11 Home")
EDITION_IDS = {"Windows 11 Pro": "Professional", "Windows 11 Home": "Core"}
SHARE = "\\\\10.99.0.1\\pureboot-boot"  # PUREBOOT_WINDOWS_SHARE in the lab
ADMIN_CREDENTIAL = "lab-win-admin"
JOIN_CREDENTIAL = "lab-corp-join"


def wim(dest: Path, images: list[tuple[str, dict[str, str]]], boot: int = 0) -> bytes:
    """A real WIM: one small tree captured once per image name, with its XML properties."""
    wimlib = tool("wimlib-imagex")
    tree = dest.with_suffix(".tree")
    system32 = tree / "Windows" / "System32"
    system32.mkdir(parents=True, exist_ok=True)
    (system32 / "pbtest.txt").write_text("PureBoot boot lab image\r\n")
    dest.unlink(missing_ok=True)
    for number, (name, properties) in enumerate(images, 1):
        verb = "capture" if number == 1 else "append"
        extra = ["--boot"] if number == boot else []
        run(wimlib, verb, str(tree), str(dest), name, *extra)
        props = [f"--image-property={key}={value}" for key, value in properties.items()]
        if props:
            run(wimlib, "info", str(dest), str(number), *props)
    shutil.rmtree(tree)
    return dest.read_bytes()


def iso(workdir: Path) -> Path:
    """Build the Windows-like ISO under ``workdir``; its path."""
    workdir.mkdir(parents=True, exist_ok=True)
    amd64 = {"WINDOWS/ARCH": "9"}
    install = wim(
        workdir / "install.wim",
        [(name, {**amd64, "WINDOWS/EDITIONID": EDITION_IDS[name]}) for name in EDITIONS],
    )
    boot = wim(
        workdir / "boot.wim",
        [("Microsoft Windows PE (amd64)", amd64), ("Microsoft Windows Setup (amd64)", amd64)],
        boot=2,
    )
    files = {
        "/bootmgr": b"PBLAB bootmgr stand-in\n" * 200,
        "/boot/bcd": b"PBLAB BCD stand-in\n" * 100,
        "/boot/boot.sdi": b"PBLAB boot.sdi stand-in\n" * 100,
        "/efi/boot/bootx64.efi": b"PBLAB bootx64.efi stand-in\n" * 60,
        "/sources/boot.wim": boot,
        "/sources/install.wim": install,
        "/sources/idwbinfo.txt": (
            "[BUILDINFO]\r\n"
            "BuildArch=amd64\r\n"
            "BuildBranch=ni_release\r\n"
            "BuildType=fre\r\n"
            f"BuildLab={BUILD}.ni_release.220506-1250\r\n"
            f"BuildLabEx={BUILD}.1.amd64fre.ni_release.220506-1250\r\n"
        ).encode(),
        "/setup.exe": b"MZ PBLAB setup.exe stand-in\n",
    }
    return build_iso(
        workdir / "windows.iso",
        files,
        vol_ident="CCCOMA_X64FRE_EN-US_DV9",
        rock_ridge=False,
        joliet=False,
        udf=True,
        iso9660=False,
    )


def workflow(name: str, edition: str = EDITIONS[0], image: str = IMAGE_NAME) -> str:
    return f"""\
name: {name}
description: "Boot lab - Windows Setup through wimboot, joining a domain online"
arch: [x86_64]
firmware: [bios, uefi]
tasks:
  - type: pxe_boot
    boot_image: {image}
  - type: windows_install
    edition: {edition}
    admin_credential: {ADMIN_CREDENTIAL}
    timezone: UTC
  - type: domain_join
    domain: corp.example.com
    mode: online
    ou: "OU=Lab,DC=corp,DC=example,DC=com"
    credential: {JOIN_CREDENTIAL}
"""


CREDENTIALS = (
    (ADMIN_CREDENTIAL, "windows_admin", "Administrator", "Lab-Adm1n!"),
    (JOIN_CREDENTIAL, "domain_join", "CORP\\svc-join", "Lab-J0in!"),
)


def api_status(lab: Lab, method: str, path: str, data: dict) -> tuple[str, dict]:
    """(HTTP status, JSON body) of a call ``lab.api`` would fail on."""
    out = lab.curl(
        "-X",
        method,
        "-H",
        "Accept: application/json",
        "-H",
        f"Authorization: Bearer {lab.token}",
        "-H",
        "Content-Type: application/json",
        "--data",
        json.dumps(data),
        "-w",
        "\n%{http_code}",
        BASE + path,
    )
    body, _, status = out.rpartition("\n")
    return status, json.loads(body) if body else {}


def report(lab: Lab, token: str, status: str, progress: int, message: str) -> None:
    """What pureboot.cmd (WinPE) and the first-logon commands send: a report with the token."""
    out = lab.curl(
        "-X",
        "POST",
        "-H",
        f"Authorization: Node {token}",
        "-H",
        "Content-Type: application/json",
        "--data",
        json.dumps({"status": status, "progress": progress, "logs": [message]}),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        f"{BASE}/api/v1/report",
    )
    assert out == "200", f"report {status}: HTTP {out}"
