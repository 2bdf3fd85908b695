"""Image deployment through the agent's protocol: the workflow, the agent boot
with the install's token, the disk chosen by rule, the image streamed, the
read-back checksum deciding `installed`, and the refusals."""

from __future__ import annotations

import hashlib
import io

import pytest
import yaml

from agent.models import AgentJob
from nodes import services as node_services
from nodes.models import Node
from tests.factories import make_node, make_user
from workflows.models import WorkflowRun

from .helpers import DISKS, ScriptedAgent, boot_token, import_agent_image, inventory

pytestmark = pytest.mark.django_db
MAC = "52:54:00:12:34:56"


@pytest.fixture(autouse=True)
def image_root(settings, tmp_path):
    settings.PUREBOOT_IMAGE_ROOT = tmp_path / "images"
    return settings.PUREBOOT_IMAGE_ROOT


def raw_image(size=1024 * 1024) -> bytes:
    data = bytearray(size)
    data[446:462] = (
        b"\x80"
        + bytes(3)
        + b"\x0c"
        + bytes(3)
        + (2048).to_bytes(4, "little")
        + ((size // 512 - 2048).to_bytes(4, "little"))
    )
    data[510:512] = b"\x55\xaa"
    data[4096:4110] = b"PUREBOOT-IMAGE"
    return bytes(data)


def upload(api, content: bytes, name="lab-os", fmt="raw"):
    f = io.BytesIO(content)
    f.name = f"image.{fmt}"
    admin = api(make_user("Admin"))
    answer = admin.post(
        "/api/v1/templates",
        {"name": name, "format": fmt, "arch": "x86_64", "file": f},
        format="multipart",
    )
    assert answer.status_code == 201, answer.data
    return answer


def deploy_workflow(api, target="smallest", image="lab-os", **extra):
    task = {"type": "image_deploy", "image": image, "target": target, **extra}
    content = yaml.safe_dump(
        {"name": "deploy", "arch": ["x86_64"], "firmware": ["bios", "uefi"], "tasks": [task]}
    )
    admin = api(make_user("Admin"))
    return admin.post("/api/v1/workflows", {"content": content}, format="json")


def start(api, client, **workflow):
    content = raw_image()
    upload(api, content)
    import_agent_image()
    created = deploy_workflow(api, **workflow)
    assert created.status_code == 201, created.data
    node = make_node("discovered", macs=[MAC], hostname="web07")
    from workflows.models import Workflow

    node_services.perform(
        node.pk, "assign", node_services.SYSTEM, workflow=Workflow.objects.get(name="deploy")
    )
    script = client.get(f"/boot/ipxe?mac={MAC}").content.decode()
    assert "installing web07" in script and "/boot/files/pureboot-agent-x86_64/vmlinuz" in script
    assert Node.objects.get(pk=node.pk).state == "installing"
    return node, content, ScriptedAgent(boot_token(client, MAC))


def test_the_agent_deploys_the_image_and_its_checksum_completes_the_install(api, client):
    node, content, agent = start(api, client)
    job = agent.job().json()
    assert job["kind"] == "deploy" and job["step"]["action"] == "inventory"
    answer = agent.run(job["job"], 0, inventory()).json()
    step = answer["step"]
    assert step["action"] == "deploy"
    params = step["params"]
    # The smallest disk that holds the image and its first-boot partition.
    assert params["disk"]["name"] == "sda"
    assert params["size"] == len(content)
    assert params["sha256"] == hashlib.sha256(content).hexdigest()
    assert "local-hostname: web07" in params["seed"]["meta_data"]
    assert params["seed"]["user_data"].startswith("#cloud-config\n")
    image = agent.client.get(params["url"])
    assert image.status_code == 200
    assert b"".join(image.streaming_content) == content
    assert agent.step(job["job"], 1, "started").status_code == 200
    done = agent.step(
        job["job"],
        1,
        "succeeded",
        {"sha256": params["sha256"], "bytes": len(content), "write_seconds": 1},
    )
    assert done.json()["action"] == "reboot"
    assert Node.objects.get(pk=node.pk).state == "installed"
    run = WorkflowRun.objects.get(node=node)
    assert run.status == "succeeded"
    # The deployed system's first boot reports with the token in its seed.
    token = params["seed"]["meta_data"].split("pureboot-token: ")[1].split()[0]
    first = client.post(
        "/api/v1/report",
        {"status": "active"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Node {token}",
    )
    assert first.status_code == 200
    assert Node.objects.get(pk=node.pk).state == "active"


def test_a_checksum_mismatch_fails_the_install_with_the_reason(api, client):
    node, content, agent = start(api, client)
    job = agent.job().json()
    step = agent.run(job["job"], 0, inventory()).json()["step"]
    agent.step(job["job"], 1, "started")
    answer = agent.step(job["job"], 1, "succeeded", {"sha256": "0" * 64, "bytes": len(content)})
    assert answer.json()["action"] == "poweroff"
    assert Node.objects.get(pk=node.pk).state == "failed"
    run = WorkflowRun.objects.get(node=node)
    assert run.status == "failed" and "read back SHA-256" in run.error
    assert step["params"]["sha256"] in AgentJob.objects.get(node=node).error


def test_a_disk_too_small_is_refused_before_anything_is_written(api, client):
    node, content, agent = start(api, client, target="largest")
    job = agent.job().json()
    tiny = [{**DISKS[2], "size": 512 * 1024}]
    answer = agent.run(job["job"], 0, inventory(disks=tiny)).json()
    assert answer["action"] == "poweroff"
    assert Node.objects.get(pk=node.pk).state == "failed"
    error = AgentJob.objects.get(node=node).error
    assert "vda has 524288 bytes" in error and "nothing was written" in error


def test_the_image_is_served_only_to_its_own_running_deploy_step(api, client):
    node, content, agent = start(api, client)
    job = agent.job().json()
    url = f"/api/v1/agent/jobs/{job['job']}/image"
    assert agent.client.get(url).status_code == 404  # inventory first
    agent.run(job["job"], 0, inventory())
    assert agent.client.get(url).status_code == 200
    stranger = ScriptedAgent("forged")
    assert stranger.client.get(url).status_code == 401
    anonymous = client.get(url)
    assert anonymous.status_code in (401, 403)


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"image": "missing"}, "image template 'missing' does not exist"),
        ({"target": "fastest"}, "use smallest, largest"),
        ({"target": "/dev/../etc"}, "use smallest, largest"),
    ],
)
def test_a_workflow_that_cannot_deploy_is_refused_at_save(api, extra, words):
    upload(api, raw_image())
    answer = deploy_workflow(api, **extra)
    assert answer.status_code == 400 and words in str(answer.data)


def test_an_image_deploy_cannot_share_a_workflow_with_an_installer(api):
    upload(api, raw_image())
    content = yaml.safe_dump(
        {
            "name": "mixed",
            "arch": ["x86_64"],
            "firmware": ["bios"],
            "tasks": [
                {"type": "pxe_boot", "kernel": "k", "initrd": "i"},
                {"type": "image_deploy", "image": "lab-os"},
            ],
        }
    )
    answer = api(make_user("Admin")).post("/api/v1/workflows", {"content": content}, format="json")
    assert answer.status_code == 400 and "cannot share a workflow with image_deploy" in str(
        answer.data
    )


def test_a_workflow_wipe_runs_before_the_image_and_certifies_each_disk(api, client):
    import json as _json

    from agent.models import WipeCertificate
    from workflows.models import Workflow

    from .helpers import wipe_result

    content = raw_image()
    upload(api, content)
    import_agent_image()
    tasks = [
        {"type": "disk_wipe", "category": "clear", "disks": ["serial:PBSATA01", "/dev/vda"]},
        {"type": "image_deploy", "image": "lab-os", "target": "smallest"},
    ]
    doc = yaml.safe_dump({"name": "wipe-deploy", "arch": ["x86_64"], "tasks": tasks})
    admin = api(make_user("Admin"))
    assert admin.post("/api/v1/workflows", {"content": doc}, format="json").status_code == 201
    node = make_node("discovered", macs=[MAC], hostname="web08")
    node_services.perform(
        node.pk, "assign", node_services.SYSTEM, workflow=Workflow.objects.get(name="wipe-deploy")
    )
    client.get(f"/boot/ipxe?mac={MAC}")
    agent = ScriptedAgent(boot_token(client, MAC))
    job = agent.job().json()
    answer = agent.run(job["job"], 0, inventory()).json()
    wiped = []
    while answer["step"]["action"] == "wipe":
        step = answer["step"]
        wiped.append(step["params"]["disk"]["name"])
        assert step["params"]["category"] == "clear"
        answer = agent.run(job["job"], step["index"], wipe_result(step["params"])).json()
    assert wiped == ["sda", "vda"]  # the disks the rules name, not the NVMe one
    step = answer["step"]
    assert step["action"] == "deploy" and step["index"] == 3
    done = agent.run(
        job["job"], 3, {"sha256": step["params"]["sha256"], "bytes": len(content)}
    ).json()
    assert done["action"] == "reboot"
    assert Node.objects.get(pk=node.pk).state == "installed"
    certs = WipeCertificate.objects.filter(node=node).order_by("disk_serial")
    assert [c.disk_serial for c in certs] == ["PBSATA01", "PBVIRTIO01"]
    request = _json.loads(certs[0].document)["request"]
    assert request["after"] == "installed" and "disk_wipe" in request["reason"]
    assert request["transition_by"] == "system"


@pytest.mark.parametrize(
    "tasks,words",
    [
        ([{"type": "disk_wipe"}], "before the workflow's partition and image_deploy"),
        (
            [{"type": "image_deploy", "image": "lab-os"}, {"type": "disk_wipe"}],
            "before the workflow's partition and image_deploy",
        ),
        ([{"type": "disk_wipe", "disks": ["rm -rf"]}], "tasks[0].disks[0]"),
    ],
)
def test_a_wipe_step_outside_an_image_deployment_is_refused_at_save(api, tasks, words):
    upload(api, raw_image())
    doc = yaml.safe_dump({"name": "w", "arch": ["x86_64"], "tasks": tasks})
    answer = api(make_user("Admin")).post("/api/v1/workflows", {"content": doc}, format="json")
    assert answer.status_code == 400 and words in str(answer.data), answer.data
