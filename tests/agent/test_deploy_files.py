"""File-level images: tar.gz/tar.zst uploads with their file manifest, the
``partition`` step's layout checked at save, and the agent's ``deploy_files``
step planned, streamed and proven by the manifest. The real agent lays out,
unpacks and reads back in the boot lab (tests/e2e/test_agent_lab.py)."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
import yaml
import zstandard

from agent.models import AgentJob
from nodes import services as node_services
from nodes.models import Node
from tests.factories import make_node, make_user
from workflows.models import ImageTemplateVersion, Workflow, WorkflowRun
from workflows.partitions import LayoutError, parse

from .helpers import DISKS, ScriptedAgent, boot_token, import_agent_image, inventory

pytestmark = pytest.mark.django_db
MAC = "52:54:00:12:34:57"
LAYOUT = [
    {"role": "esp", "size": "64M"},
    {"role": "swap", "size": "16M"},
    {"role": "root", "size": "rest"},
]


@pytest.fixture(autouse=True)
def image_root(settings, tmp_path):
    settings.PUREBOOT_IMAGE_ROOT = tmp_path / "images"


def tree() -> list[tuple[str, bytes | None, str]]:
    """(path, content, kind): a small root file system with the awkward cases."""
    return [
        ("./etc", None, "dir"),
        ("./etc/hostname", b"template\n", "file"),
        ("./etc/os-release", b"ID=lab\n", "file"),
        ("./boot/efi/EFI/BOOT/BOOTX64.EFI", b"MZ" + b"\x00" * 510, "file"),
        ("./usr/bin/tool", b"#!/bin/sh\necho tool\n", "file"),
        ("./usr/bin/tool-again", b"./usr/bin/tool", "hardlink"),
        ("./usr/bin/link", b"tool", "symlink"),
        ("./srv/a file with spaces", b"x" * 70000, "file"),
        ("./etc/hostname", b"replaced\n", "file"),  # a later entry wins, as tar extracts
    ]


def make_tar(entries=None, compress="gz") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for path, content, kind in entries or tree():
            info = tarfile.TarInfo(path)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, content.decode()
                archive.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, content.decode()
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    data = out.getvalue()
    if compress == "zst":
        return zstandard.ZstdCompressor().compress(data)
    import gzip

    return gzip.compress(data, mtime=0)


def expected_manifest() -> tuple[str, int]:
    """What `find . -type f | sort | xargs sha256sum | sha256sum` gives on the unpacked tree."""
    files = {}
    for path, content, kind in tree():
        if kind == "file":
            files[path] = hashlib.sha256(content).hexdigest()
    files["./usr/bin/tool-again"] = files["./usr/bin/tool"]
    lines = "".join(f"{files[p]}  {p}\n" for p in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest(), len(files)


def upload(api, content: bytes, fmt="tar.gz", name="lab-root"):
    f = io.BytesIO(content)
    f.name = f"root.{fmt}"
    return api(make_user("Admin")).post(
        "/api/v1/templates",
        {"name": name, "format": fmt, "arch": "x86_64", "file": f},
        format="multipart",
    )


def workflow(api, partitions=None, image="lab-root", **layout):
    tasks = [
        {"type": "partition", "partitions": LAYOUT if partitions is None else partitions, **layout},
        {"type": "image_deploy", "image": image},
    ]
    content = yaml.safe_dump(
        {"name": "files", "arch": ["x86_64"], "firmware": ["uefi"], "tasks": tasks}
    )
    return api(make_user("Admin")).post("/api/v1/workflows", {"content": content}, format="json")


@pytest.mark.parametrize("compress,fmt", [("gz", "tar.gz"), ("zst", "tar.zst")])
def test_an_archive_upload_records_its_file_manifest(api, compress, fmt):
    answer = upload(api, make_tar(compress=compress), fmt=fmt)
    assert answer.status_code == 201, answer.data
    version = ImageTemplateVersion.objects.get()
    manifest, count = expected_manifest()
    assert (version.content_sha256, version.files) == (manifest, count)
    assert version.virtual_size == sum(len(c) for _p, c, k in tree() if k == "file")


def test_a_decompression_bomb_is_refused_without_unpacking_it_anywhere(api, settings):
    class Zeros(io.RawIOBase):  # 1 GiB of zeros without holding it
        def readable(self):
            return True

        def readinto(self, buffer):
            buffer[:] = bytes(len(buffer))
            return len(buffer)

    import gzip

    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as packed:
        with tarfile.open(fileobj=packed, mode="w|") as archive:
            info = tarfile.TarInfo("zeros")
            info.size = 2**30 + 1  # packs to a few MiB; the header alone gives it away
            archive.addfile(info, io.BufferedReader(Zeros(), 1 << 20))
    answer = upload(api, out.getvalue())
    assert answer.status_code == 400 and "decompression bomb" in str(answer.data)
    assert not ImageTemplateVersion.objects.exists()
    incoming = settings.PUREBOOT_IMAGE_ROOT / ".incoming"
    assert not any(incoming.iterdir())  # nothing left half-written


def test_archives_that_climb_out_or_link_nowhere_are_refused(api):
    climbing = make_tar([("../etc/passwd", b"x", "file")])
    assert "climbs out" in str(upload(api, climbing).data)
    dangling = make_tar([("./a", b"./missing", "hardlink")])
    assert "not a file earlier" in str(upload(api, dangling, name="other").data)
    assert "not zstd data" in str(upload(api, make_tar(), fmt="tar.zst", name="third").data)


ROOT = {"role": "root", "size": "rest"}
ESP = {"role": "esp", "size": "64M"}
P0 = "partitions[0]"


@pytest.mark.parametrize(
    "partitions,layout,field,words",
    [
        ([ESP], {}, "partitions", "exactly one partition has role root"),
        ([ROOT, {"role": "swap", "size": "1G"}], {}, f"{P0}.size", "only the last"),
        ([{**ROOT, "size": "10T"}], {}, f"{P0}.size", "whole MiB or GiB"),
        ([{**ESP, "size": "8M"}, ROOT], {}, f"{P0}.size", "33M"),
        ([{**ROOT, "fs": "xfs"}], {}, f"{P0}.fs", "root partition is ext4"),
        ([{"role": "data", "size": "1G"}, ROOT], {}, f"{P0}.mount", "mount point"),
        ([{"role": "data", "size": "1G", "mount": "/srv/../etc"}, ROOT], {}, f"{P0}.mount", "'..'"),
        ([{**ROOT, "mount": "/home"}], {}, f"{P0}.mount", "mounted at /"),
        ([{"role": "data", "size": "1G", "mount": "/."}, ROOT], {}, f"{P0}.mount", "'.'"),
        ([{"role": "data", "size": "1G", "mount": "//"}, ROOT], {}, f"{P0}.mount", "empty"),
        ([{**ROOT, "colour": "red"}], {}, P0, "unknown keys colour"),
        ([ROOT], {"layout": "lvm"}, "layout", "lvm layouts are not built yet"),
        (
            [{"role": "swap", "size": "1M"}] * 4 + [ROOT],
            {"table": "msdos"},
            "partitions",
            "4 primary",
        ),
        ([ROOT], {"disk": "rm -rf"}, "disk", "smallest, largest"),
    ],
)
def test_a_layout_that_cannot_be_laid_out_is_refused_at_save(api, partitions, layout, field, words):
    upload(api, make_tar())
    answer = workflow(api, partitions, **layout)
    assert answer.status_code == 400, answer.data
    text = str(answer.data)
    assert f"tasks[0].{field}" in text and words in text, text


def test_the_layout_becomes_concrete_partitions():
    layout = parse({"partitions": LAYOUT + [], "table": "gpt"}, "x86_64")
    assert [(p["role"], p["mib"], p["fs"], p["mount"]) for p in layout] == [
        ("esp", 64, "vfat", "/boot/efi"),
        ("swap", 16, "swap", ""),
        ("root", None, "ext4", "/"),
    ]
    assert layout[0]["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    assert layout[2]["type"] == "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"  # Linux root (x86-64)
    assert parse({"partitions": LAYOUT, "table": "msdos"})[0]["type"] == "ef"
    with pytest.raises(LayoutError):
        parse({"partitions": []})


@pytest.mark.parametrize(
    "case,words",
    [
        ("block-with-layout", "carries its own partition table"),
        ("no-layout", "add a partition step before it"),
        ("no-esp", "needs an esp partition"),
        ("layout-alone", "add the image_deploy after it"),
        ("layout-after", "comes before the image_deploy"),
        ("wim", "WIM images are applied by the Windows path"),
        ("squashfs", "cannot be unpacked from a stream"),
    ],
)
def test_workflows_that_could_not_deploy_files_are_refused_at_save(api, case, words):
    upload(api, make_tar())
    admin = api(make_user("Admin"))
    lay, deploy = (
        {"type": "partition", "partitions": LAYOUT},
        {"type": "image_deploy", "image": "lab-root"},
    )
    tasks = {
        "block-with-layout": [lay, {**deploy, "image": "blocky"}],
        "no-layout": [deploy],
        "no-esp": [{**lay, "partitions": [LAYOUT[2]]}, deploy],
        "layout-alone": [lay],
        "layout-after": [deploy, lay],
        "wim": [lay, deploy],
        "squashfs": [lay, deploy],
    }[case]
    if case == "block-with-layout":
        upload(api, b"\x00" * 1024 * 1024, fmt="raw", name="blocky")
    if case in ("wim", "squashfs"):
        ImageTemplateVersion.objects.filter(template__name="lab-root").update(format=case)
    content = yaml.safe_dump({"name": "x", "arch": ["x86_64"], "tasks": tasks})
    answer = admin.post("/api/v1/workflows", {"content": content}, format="json")
    assert answer.status_code == 400 and words in str(answer.data), answer.data


# --- the agent's step ----------------------------------------------------------------


def start(api, client, **layout):
    content = make_tar()
    assert upload(api, content).status_code == 201
    import_agent_image()
    created = workflow(api, **layout)
    assert created.status_code == 201, created.data
    node = make_node("discovered", macs=[MAC], hostname="files01")
    node_services.perform(
        node.pk, "assign", node_services.SYSTEM, workflow=Workflow.objects.get(name="files")
    )
    client.get(f"/boot/ipxe?mac={MAC}")
    return node, content, ScriptedAgent(boot_token(client, MAC))


ROOMY = [{**DISKS[1], "size": 256 * 2**20}, {**DISKS[0], "size": 2**30}]


def uefi(disks=None):
    found = inventory(disks or ROOMY)
    found["firmware"] = {"mode": "uefi", "secure_boot": "disabled"}
    return found


def test_the_agent_lays_out_unpacks_and_proves_the_files(api, client):
    node, content, agent = start(api, client)
    job = agent.job().json()
    answer = agent.run(job["job"], 0, uefi()).json()
    step = answer["step"]
    assert step["action"] == "deploy_files", answer
    params = step["params"]
    manifest, count = expected_manifest()
    assert params["disk"]["name"] == "sda"  # the smallest that holds 64M + 16M + the files
    assert params["format"] == "tar.gz" and params["sha256"] == hashlib.sha256(content).hexdigest()
    assert (params["files_sha256"], params["files"]) == (manifest, count)
    assert [p["role"] for p in params["partitions"]] == ["esp", "swap", "root"]
    assert "local-hostname: files01" in params["seed"]["meta_data"]
    streamed = agent.client.get(params["url"])
    assert b"".join(streamed.streaming_content) == content
    assert agent.step(job["job"], 1, "started").status_code == 200
    result = {
        "sha256": params["sha256"],
        "files_sha256": manifest,
        "files": count,
        "write_seconds": 1.0,
        "partitions": [{"device": "/dev/sda1", "role": "esp"}],
    }
    done = agent.step(job["job"], 1, "succeeded", result)
    assert done.json()["action"] == "reboot"
    assert Node.objects.get(pk=node.pk).state == "installed"
    assert WorkflowRun.objects.get(node=node).status == "succeeded"


def test_a_file_that_reads_back_wrong_fails_the_install(api, client):
    node, content, agent = start(api, client)
    job = agent.job().json()
    params = agent.run(job["job"], 0, uefi()).json()["step"]["params"]
    assert agent.step(job["job"], 1, "started").status_code == 200
    result = {"sha256": params["sha256"], "files_sha256": "0" * 64, "files": 6}
    answer = agent.step(job["job"], 1, "succeeded", result).json()
    assert answer["action"] == "poweroff"
    assert Node.objects.get(pk=node.pk).state == "failed"
    job = AgentJob.objects.get(node=node)
    assert "have manifest SHA-256" in job.error and job.status == "failed"


def test_a_bios_machine_or_a_disk_too_small_is_refused_before_anything_is_written(api, client):
    node, content, agent = start(api, client)
    job = agent.job().json()
    answer = agent.run(job["job"], 0, inventory()).json()  # inventory() reports BIOS
    assert answer["action"] == "poweroff"
    assert "boots BIOS" in AgentJob.objects.get(node=node).error
    assert len(AgentJob.objects.get(node=node).steps) == 1  # no write step was planned

    small = make_node("discovered", macs=["52:54:00:12:34:58"], hostname="files02")
    node_services.perform(
        small.pk, "assign", node_services.SYSTEM, workflow=Workflow.objects.get(name="files")
    )
    client.get("/boot/ipxe?mac=52:54:00:12:34:58")
    agent = ScriptedAgent(boot_token(client, "52:54:00:12:34:58"))
    job = agent.job().json()
    tiny = [{**DISKS[1], "size": 64 * 2**20}]  # 64 MiB: not 64M + 16M + the rest
    agent.run(job["job"], 0, uefi(tiny))
    assert "no disk holds" in AgentJob.objects.get(node=small).error
