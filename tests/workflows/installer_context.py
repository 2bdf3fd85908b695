"""A realistic installer template context, as workflows.context.node_context builds it.

``sample_context(task_type, node={...}, params={...}, install={...})`` returns a
fresh deep copy each call; the three mappings are merged into the defaults, so
a test names only what it changes.
"""

from __future__ import annotations

import copy
from typing import Any

# crypt(3) SHA-512 hashes ("$6$"), as `mkpasswd -m sha-512` prints them.
USER_HASH = "$6$Zq1rXb2s3cT4vU5w$" + "k" * 86
ROOT_HASH = "$6$aB3dE5fG7hI9jK1l$" + "r" * 86
ED25519_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGfXb0m0pX3b1Rz8Qd8yXv2cJvJtq9gJmT0nU7G0c4Xy ops@bastion"
)
RSA_KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7" + "x" * 60 + " deploy@ci"
TOKEN = "nt_5Qe1v8C0yJ2pW7kHfR4sLm9aBxZ3uTdN"
REPORT_URL = "http://pureboot.example:8000/api/v1/report"

_NODE = {
    "id": 42,
    "hostname": "web01",
    "domain": "lab.example.com",
    "arch": "x86_64",
    "firmware": "uefi",
    "serial": "CZ2345ABCD",
    "system_uuid": "4c4c4544-0042-3510-8052-b7c04f4e3732",
    "vendor": "Dell Inc.",
    "model": "PowerEdge R650",
    "site": "lab",
    "interfaces": [
        {"mac": "52:54:00:12:34:56", "name": "eno1", "is_primary": True},
        {"mac": "52:54:00:12:34:57", "name": "eno2", "is_primary": False},
    ],
    "primary_mac": "52:54:00:12:34:56",
    "metadata": {"rack": "r12"},
}

_PARAMS = {
    "disk": "",
    "layout": "lvm",
    "locale": "en_US.UTF-8",
    "keyboard": "us",
    "timezone": "UTC",
    "username": "pureboot",
    "password_hash": USER_HASH,
    "root_password_hash": "",
    "ssh_keys": [ED25519_KEY],
    "packages": ["openssh-server"],
    "post_install": ["echo done > /root/pureboot-done"],
    "mirror": "",
}

# Parameters only some task types have (workflows.registry), with their defaults.
_TASK_PARAMS: dict[str, dict[str, Any]] = {
    "kickstart": {
        "distro": "rocky",
        "version": "9",
        "repo_url": "http://mirror.example/rocky/9/BaseOS/x86_64/os/",
    },
    "debian_preseed": {"suite": "bookworm"},
    "cloud_init": {"user_data": {}},
    "windows_install": {
        "edition": "Windows 11 Pro",
        "admin_credential": "win-local-admin",
        "product_key_credential": "",
        "locale": "en-US",
        "input_locale": "",
        "timezone": "UTC",
        "disk": 0,
        "computer_name": "",
        "organization": "",
        "first_logon_commands": [],
        "post_install_powershell": [],
    },
}

# windows_install's extra context (workflows.windows_context builds it in an install).
WINDOWS = {
    "install_share": "\\\\pureboot.example\\pureboot-boot\\windows-22621-x86_64",
    "install_file": "install.wim",
    "arch": "amd64",
    "firmware": "uefi",
    "admin_password": "Adm1n-Pässwörd!",
    "product_key": "",
    "share_username": "",
    "share_password": "",
    "drivers": False,
}

# A Raspberry Pi as PureBoot records one.
PI_NODE = {
    "hostname": "pi-kiosk-3",
    "domain": "",
    "arch": "aarch64",
    "firmware": "pi",
    "serial": "10000000a1b2c3d4",
    "system_uuid": None,
    "vendor": "Raspberry Pi Ltd",
    "model": "Raspberry Pi 4 Model B Rev 1.5",
    "interfaces": [{"mac": "dc:a6:32:01:02:03", "name": "eth0", "is_primary": True}],
    "primary_mac": "dc:a6:32:01:02:03",
}


def sample_context(
    task_type: str | None = None,
    *,
    node: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    install: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The context for node 42 (web01.lab.example.com, UEFI x86_64), with overrides.

    For ``raspberrypi_os`` the node is a Raspberry Pi 4 (PI_NODE).
    """
    base_node = {**_NODE, **PI_NODE} if task_type == "raspberrypi_os" else _NODE
    base_params = {**_PARAMS, **_TASK_PARAMS.get(task_type or "", {})}
    context = {
        "node": {**base_node, **(node or {})},
        "params": {**base_params, **(params or {})},
        "install": {
            "report_url": REPORT_URL,
            "token": TOKEN,
            "config_url": f"http://pureboot.example:8000/api/v1/install/{TOKEN}/",
            **(install or {}),
        },
    }
    if task_type == "windows_install":
        context["windows"] = dict(WINDOWS)
        context["join"] = None
    return copy.deepcopy(context)
