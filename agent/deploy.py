"""Image deployment by the agent: which disk, what to write, and what the deployed system gets.

A workflow's ``image_deploy`` step names a block image template (raw, or
qcow2/VHDX through their raw copy), optionally a version, and a rule for
the target disk. Once the agent has reported the machine's disks, PureBoot
picks the disk by that rule and refuses, before a byte is written, a disk
smaller than the image. The agent streams the raw image from the controller
(nginx sends it in production) straight to the disk, reads back exactly the
image's length and compares its SHA-256 with the version's, then adds a
small ``CIDATA`` partition after the image holding NoCloud ``meta-data`` and
``user-data`` (hostname, SSH keys, and the first-boot report), which
cloud-init reads on the deployed system's first boot.
"""

from __future__ import annotations

from typing import Any

import yaml

from workflows.images import DeployImpossible

SEED_BYTES = 4 * 1024 * 1024  # the CIDATA partition


def choose_disk(disks: list[dict[str, Any]], rule: str, needed: int) -> dict[str, Any]:
    """The target disk by ``rule``: smallest, largest, serial:X or /dev/NAME."""
    fixed = [d for d in disks if not d.get("removable")] or disks
    if not fixed:
        raise DeployImpossible("the agent found no disks")
    rule = rule or "smallest"
    if rule == "smallest":
        fitting = [d for d in fixed if d["size"] >= needed]
        if not fitting:
            largest = max(fixed, key=lambda d: d["size"])
            raise DeployImpossible(
                f"no disk holds the image ({needed} bytes): the largest, {largest['name']}, "
                f"has {largest['size']}; nothing was written"
            )
        disk = min(fitting, key=lambda d: (d["size"], d["name"]))
    elif rule == "largest":
        disk = max(fixed, key=lambda d: (d["size"], d["name"]))
    elif rule.startswith("serial:"):
        disk = next((d for d in disks if d.get("serial") == rule[7:]), None)
        if disk is None:
            raise DeployImpossible(f"no disk has serial {rule[7:]!r}")
    elif rule.startswith("/dev/"):
        disk = next((d for d in disks if d.get("path") == rule), None)
        if disk is None:
            raise DeployImpossible(f"no disk {rule}")
    else:
        raise DeployImpossible(f"unknown disk rule {rule!r}")
    if disk["size"] < needed:
        raise DeployImpossible(
            f"disk {disk['name']} has {disk['size']} bytes; the image and its first-boot "
            f"partition need {needed}; nothing was written"
        )
    return disk


def network_config(task: dict[str, Any], inventory: dict[str, Any]) -> str | None:
    """NoCloud network-config (version 2) when the workflow keeps the provisioning address."""
    net = inventory.get("network") or {}
    if task.get("network") != "keep" or not net.get("address") or not net.get("mac"):
        return None
    ethernet: dict[str, Any] = {
        "match": {"macaddress": net["mac"]},
        "addresses": [net["address"]],
    }
    if net.get("gateway"):
        ethernet["routes"] = [{"to": "default", "via": net["gateway"]}]
    if net.get("dns"):
        ethernet["nameservers"] = {"addresses": list(net["dns"])}
    return yaml.safe_dump({"version": 2, "ethernets": {"provisioning": ethernet}}, sort_keys=True)


def seed(
    node, token: str, base_url: str, task: dict[str, Any], inventory: dict[str, Any] | None = None
) -> dict[str, str]:
    """NoCloud meta-data, user-data and (when asked) network-config for the first boot."""
    hostname = node.hostname or f"node-{node.pk}"
    meta = {
        "instance-id": f"pureboot-{node.pk}-{token[-12:]}",
        "local-hostname": hostname,
        # For systems without cloud-init (and PureBoot's lab OS): where to report.
        "pureboot-report-url": f"{base_url}/api/v1/report",
        "pureboot-token": token,
    }
    report = (
        f"curl -fsS -X POST -H 'Authorization: Node {token}' -H 'Content-Type: "
        f'application/json\' -d \'{{"status": "active"}}\' {base_url}/api/v1/report'
    )
    user = {
        "hostname": hostname.split(".")[0],
        "fqdn": hostname if "." in hostname else None,
        "ssh_authorized_keys": list(task.get("ssh_keys") or []),
        "runcmd": [report],
    }
    user = {k: v for k, v in user.items() if v not in (None, [])}
    out = {
        "meta_data": yaml.safe_dump(meta, sort_keys=True),
        "user_data": "#cloud-config\n" + yaml.safe_dump(user, sort_keys=True, width=1000),
    }
    network = network_config(task, inventory or {})
    if network:
        out["network_config"] = network
    return out
