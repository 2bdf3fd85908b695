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
from django.conf import settings

from nodes.choices import NodeState
from nodes.models import Node
from workflows import partitions
from workflows import services as workflow_services
from workflows.context import public_base_url
from workflows.images import DeployImpossible, deployable_version, raw_file

from . import wipe
from .models import AgentJob
from .steps import disk_words, new_step, wipe_request

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


# --- planning the agent's steps ---------------------------------------------------


def plan(job: AgentJob, node: Node, inventory: dict[str, Any]) -> str | None:
    task = job.params["task"]
    node = Node.objects.get(pk=node.pk)
    try:
        version = deployable_version(task)
        _, size, sha = raw_file(version)
        problem = plan_workflow_wipe(job, node, inventory)
        if problem:
            return problem
        if version.template.kind == "file":
            layout_task = next((t for t in job.run.version.tasks if t["type"] == "partition"), None)
            if layout_task is None:
                raise DeployImpossible(
                    f"{version} is a file-level image and the workflow lays out no disk"
                )
            return plan_files(job, node, inventory, task, version, layout_task)
        # Room after the image for the first-boot partition and a GPT backup header.
        disk = choose_disk(
            inventory.get("disks") or [], task.get("target", ""), size + SEED_BYTES + 2**20
        )
    except DeployImpossible as exc:
        return str(exc)
    token = workflow_services.issue_token(job.run)
    params = {
        "url": f"/api/v1/agent/jobs/{job.pk}/image",
        "image": str(version),
        "size": size,
        "sha256": sha,
        "disk": disk_words(disk),
        "seed": seed(node, token, public_base_url(), task, inventory),
    }
    job.params = {**job.params, "version": version.pk}
    job.steps = job.steps + [new_step(f"deploy {version} to {disk['name']}", "deploy", params)]
    return None


def plan_workflow_wipe(job: AgentJob, node: Node, inventory: dict[str, Any]) -> str | None:
    """The workflow's disk_wipe step: the disks it names (or all) wiped before the write."""
    task = next((t for t in job.run.version.tasks if t["type"] == "disk_wipe"), None)
    if task is None:
        return None
    disks = inventory.get("disks") or []
    if not disks:
        return "the agent found no disks; nothing was wiped or written"
    chosen: dict[str, dict[str, Any]] = {}
    for rule in task.get("disks") or []:
        disk = choose_disk(disks, rule, 0)
        chosen[disk["path"]] = disk
    targets = list(chosen.values()) if task.get("disks") else disks
    request = wipe_request(node, into=(NodeState.PENDING, NodeState.REPROVISION))
    request.update(category=task.get("category", "best"), after=NodeState.INSTALLED)
    request["reason"] = f"workflow {job.run.version} step disk_wipe: {request['reason']}".strip()
    job.params = {**job.params, "request": request, "verify": settings.PUREBOOT_WIPE_VERIFY}
    planned = []
    for disk in targets:
        try:
            planned.append(
                {
                    **wipe.plan(disk, task.get("category", "best"), int(task.get("passes", 1))),
                    "verify": settings.PUREBOOT_WIPE_VERIFY,
                }
            )
        except wipe.WipeImpossible as exc:
            return str(exc)
    job.steps = job.steps + [new_step(f"wipe {p['disk']['name']}", "wipe", p) for p in planned]
    return None


def plan_files(job, node, inventory, task, version, layout_task) -> None:
    """A file-level image: the disk laid out as the partition step says, the archive
    unpacked onto it, every file read back against the archive's manifest."""
    firmware = (inventory.get("firmware") or {}).get("mode")
    if firmware == "bios":
        raise DeployImpossible(
            f"this machine boots BIOS; {version} is a file-level image, which boots by the UEFI "
            "loader it brings (PureBoot installs no boot loader): use a block image"
        )
    try:
        layout = partitions.parse(layout_task, node.arch)
    except partitions.LayoutError as exc:
        raise DeployImpossible(f"the partition step: {exc}") from None
    unpacked = int(version.virtual_size or 0)
    root = next(p for p in layout if p["role"] == "root")
    if root["mib"] is not None and root["mib"] * 2**20 < unpacked + unpacked // 10:
        raise DeployImpossible(
            f"the root partition ({root['mib']} MiB) is smaller than {version} unpacked "
            f"({unpacked} bytes, and a tenth more for the file system)"
        )
    needed = partitions.needed_bytes(layout, unpacked)
    disk = choose_disk(inventory.get("disks") or [], layout_task.get("disk", ""), needed)
    token = workflow_services.issue_token(job.run)
    _, size, sha = raw_file(version)
    params = {
        "url": f"/api/v1/agent/jobs/{job.pk}/image",
        "image": str(version),
        "format": version.format,
        "size": size,
        "sha256": sha,
        "files_sha256": version.content_sha256,
        "files": version.files,
        "disk": disk_words(disk),
        "table": layout_task.get("table", "gpt"),
        "partitions": layout,
        "seed": seed(node, token, public_base_url(), task, inventory),
    }
    job.params = {**job.params, "version": version.pk}
    name = f"partition {disk['name']} and unpack {version}"
    job.steps = job.steps + [new_step(name, "deploy_files", params)]
    return None


def accept_files(step: dict[str, Any], result: Any) -> str | None:
    """The archive arrived whole, and every file read back from the disk is the archive's."""
    if not isinstance(result, dict):
        return "no result"
    params = step["params"]
    if result.get("sha256") != params["sha256"]:
        got = result.get("sha256")
        return f"the archive streamed had SHA-256 {got!r}, the image is {params['sha256']}"
    if result.get("files_sha256") != params["files_sha256"]:
        return (
            f"the files read back from the disk ({result.get('files')!r} files) have manifest "
            f"SHA-256 {result.get('files_sha256')!r}, the image's ({params['files']} files) is "
            f"{params['files_sha256']}"
        )
    step["result"] = {
        k: result.get(k) for k in ("sha256", "files_sha256", "files", "write_seconds", "partitions")
    }
    return None
