"""Running an Ansible playbook against one freshly installed node.

``ansible-playbook`` (ansible-core) connects over SSH as the username of a
stored credential with its private key. The key, a one-host inventory and
the extra variables are written to a private temporary folder (mode 0700,
the key 0600) that is removed when the run ends. The node's SSH host key
is trusted on first contact (``StrictHostKeyChecking=accept-new`` with a
known-hosts file of this run): it is a machine PureBoot has just installed.
So the address matters: it is the first of the node's ``metadata.addresses``
(set by an operator), or the address its agent reported only when none is
set; never a loopback, link-local, multicast, unspecified or reserved one.
Every string in the host variables and the extra variables is marked unsafe
(``{"__ansible_unsafe": ...}``): Ansible does not template it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings

from credentials import services as credentials
from credentials.models import Credential
from nodes.models import Node
from workflows.registry import redact_text

from . import inventory
from .errors import ConfigMgmtError

MAX_OUTPUT_CHARS = 64 * 1024


def playbook_command() -> str:
    """``ansible-playbook``: on PATH, else beside this Python (a virtualenv's bin)."""
    found = shutil.which("ansible-playbook") or shutil.which(
        "ansible-playbook", path=str(Path(sys.executable).parent)
    )
    if not found:
        raise ConfigMgmtError("ansible-playbook is not installed on the controller (ansible-core)")
    return found


def resolve_playbook(relative: str) -> Path:
    """The playbook file under PUREBOOT_ANSIBLE_PLAYBOOK_DIR; never a path outside it."""
    root = Path(settings.PUREBOOT_ANSIBLE_PLAYBOOK_DIR).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ConfigMgmtError(f"playbook {relative} is outside PUREBOOT_ANSIBLE_PLAYBOOK_DIR")
    if not path.is_file():
        raise ConfigMgmtError(f"playbook {relative} does not exist in {root}")
    return path


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def run_playbook(node: Node, params: dict[str, Any], actor: str) -> str:
    """Run ``params["playbook"]`` against ``node``; its output, redacted.

    Raises :class:`ConfigMgmtError` (with the output's end) when the
    playbook fails, times out or cannot start.
    """
    playbook = resolve_playbook(params["playbook"])
    credential = Credential.objects.filter(name=params["credential"]).first()
    if credential is None:
        raise ConfigMgmtError(f"credential {params['credential']} does not exist")
    host = inventory.ansible_host(node)
    if not host:
        raise ConfigMgmtError(
            f"node {node.pk} has no address or host name to connect to "
            "(set metadata.addresses, or give it a host name)"
        )
    if inventory.parse_ip(host) is not None and not inventory.connectable(host):
        raise ConfigMgmtError(f"node {node.pk}: {host} is not an address to connect to")
    secret = credentials.reveal(
        credential, actor, reason=f"config_run: ansible-playbook for node {node.pk}"
    )
    if not secret.private_key:
        raise ConfigMgmtError(f"credential {credential.name} holds no private key")
    command = playbook_command()
    hidden = [v for v in (secret.password, secret.private_key) if v]
    with tempfile.TemporaryDirectory(prefix="pureboot-ansible-") as tmp:
        folder = Path(tmp)
        key = folder / "id_key"
        _write_private(key, secret.private_key.strip() + "\n")
        name = inventory.inventory_name(node)
        hostvars = {
            **inventory.host_facts(node),
            "ansible_host": host,
            "ansible_port": params["port"],
            "ansible_user": secret.username,
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=accept-new "
            f"-o UserKnownHostsFile={folder / 'known_hosts'} -o IdentitiesOnly=yes",
        }
        hosts = {name: inventory.mark_unsafe(hostvars)}
        _write_private(folder / "inventory.json", json.dumps({"all": {"hosts": hosts}}))
        extra_vars = inventory.mark_unsafe(params.get("extra_vars") or {})
        _write_private(folder / "extra_vars.json", json.dumps(extra_vars))
        # Our own (empty) configuration: none from the worker's folder or home is read.
        _write_private(folder / "ansible.cfg", "[defaults]\n")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "LANG": "C.UTF-8",
            "ANSIBLE_CONFIG": str(folder / "ansible.cfg"),
            "ANSIBLE_LOCAL_TEMP": str(folder / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
        }
        try:
            done = subprocess.run(
                [
                    command,
                    "-i",
                    str(folder / "inventory.json"),
                    "--limit",
                    name,
                    "-e",
                    f"@{folder / 'extra_vars.json'}",
                    str(playbook),
                ],
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                timeout=params["timeout"],
            )
        except subprocess.TimeoutExpired as exc:
            raise ConfigMgmtError(
                f"ansible-playbook did not finish within {params['timeout']} seconds"
            ) from exc
    output = redact_text(done.stdout or "", hidden)[-MAX_OUTPUT_CHARS:]
    if done.returncode != 0:
        raise ConfigMgmtError(f"ansible-playbook exited with {done.returncode}:\n{output}")
    return output
