"""A scripted agent for the protocol tests: it speaks the agent's HTTP protocol
through the test client, with the token the boot path issued. The real agent
(agent/ramdisk) runs in the boot lab (tests/e2e/test_agent_lab.py)."""

from __future__ import annotations

import json
import re

from rest_framework.test import APIClient

from nodes.choices import NodeState
from workflows.models import BootImage

DISKS = [
    {
        "name": "nvme0n1",
        "path": "/dev/nvme0n1",
        "model": "QEMU NVMe Ctrl",
        "serial": "PBNVME01",
        "size": 64 * 2**20,
        "rotational": False,
        "transport": "nvme",
        "capabilities": {"nvme_sanitize": [], "nvme_format": True, "nvme_format_crypto": False},
    },
    {
        "name": "sda",
        "path": "/dev/sda",
        "model": "QEMU HARDDISK",
        "serial": "PBSATA01",
        "size": 32 * 2**20,
        "rotational": True,
        "transport": "sata",
        "capabilities": {"ata_security": {"supported": False}},
    },
    {
        "name": "vda",
        "path": "/dev/vda",
        "model": "",
        "serial": "PBVIRTIO01",
        "size": 48 * 2**20,
        "rotational": True,
        "transport": "virtio",
        "capabilities": {"discard": True},
    },
]


def inventory(disks=None, **system) -> dict:
    return {
        "cpus": {"count": "2", "model": "QEMU Virtual CPU", "arch": "x86_64"},
        "memory_bytes": 1024 * 2**20,
        "disks": DISKS if disks is None else disks,
        "nics": [
            {"name": "eth0", "mac": "52:54:00:12:34:56", "speed_mbps": -1, "driver": "virtio_net"}
        ],
        "firmware": {"mode": "bios", "secure_boot": "not-applicable"},
        "system": {"vendor": "QEMU", "product": "Standard PC", "serial": "", "uuid": "", **system},
    }


def import_agent_image(arch: str = "x86_64") -> BootImage:
    return BootImage.objects.create(
        name=f"pureboot-agent-{arch}",
        family="pureboot-agent",
        version="1+6.1.0-test",
        arch=arch,
        files={
            "kernel": {"name": "vmlinuz", "sha256": "0" * 64, "size": 1},
            "initrd": {"name": "initrd.img", "sha256": "0" * 64, "size": 1},
        },
        source="test",
    )


def boot_token(client, mac: str) -> str:
    """Network-boot the machine by its MAC and read the agent token off the kernel line."""
    script = client.get(f"/boot/ipxe?mac={mac}").content.decode()
    found = re.search(r"pureboot\.token=(\S+)", script)
    assert found, script
    return found.group(1)


class ScriptedAgent:
    def __init__(self, token: str) -> None:
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Node {token}")

    def job(self):
        return self.client.get("/api/v1/agent/job")

    def step(self, job: int, index: int, status: str, result=None, detail: str = ""):
        body = {"status": status, "detail": detail}
        if result is not None:
            body["result"] = result
        return self.client.post(
            f"/api/v1/agent/jobs/{job}/steps/{index}",
            json.dumps(body),
            content_type="application/json",
        )

    def run(self, job: int, index: int, result=None):
        assert self.step(job, index, "started").status_code == 200
        return self.step(job, index, "succeeded", result)


def wipe_result(params: dict, *, passed: bool = True, method: str | None = None) -> dict:
    """What wipe.sh reports for a planned step (as the real script writes it)."""
    return {
        "method": method or params["method"],
        "started_at": "2026-12-04T05:00:00Z",
        "ended_at": "2026-12-04T05:00:09Z",
        "output": "",
        "verification": {
            "mode": "full",
            "expect": params["expect"],
            "bytes_read": params["disk"]["size"],
            "regions": 0,
            "passed": passed,
            "detail": "all bytes read back as zeros" if passed else "4096 bytes read back non-zero",
        },
    }


def wipe_all(agent: ScriptedAgent) -> dict:
    """Run a whole wipe job: inventory, then every planned disk; returns the last answer."""
    answer = agent.job().json()
    assert answer["step"]["action"] == "inventory"
    answer = agent.run(answer["job"], 0, inventory()).json()
    while answer["action"] == "run":
        step = answer["step"]
        answer = agent.run(answer["job"], step["index"], wipe_result(step["params"])).json()
    return answer


__all__ = ["NodeState"]
