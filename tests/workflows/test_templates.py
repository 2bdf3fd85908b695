"""Image templates: streamed uploads checked against their format, versions, ranged downloads."""

import gzip
import hashlib
import io
import struct
import subprocess
import tarfile

import pytest

from audit.models import AuditEvent
from nodes import services as node_services
from tests.factories import make_node, make_user
from workflows import imagefiles
from workflows.models import ImageTemplate, ImageTemplateVersion, Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def image_root(settings, tmp_path):
    settings.PUREBOOT_IMAGE_ROOT = tmp_path / "images"
    return settings.PUREBOOT_IMAGE_ROOT


@pytest.fixture(autouse=True)
def eager_tasks():
    """Run queued tasks in-process here; tests/integration covers the real worker."""
    from pureboot.celery import app

    old = app.conf.get("task_always_eager", False)
    app.conf.update(task_always_eager=True)
    yield
    app.conf.update(task_always_eager=old)


@pytest.fixture
def admin_client(api):
    return api(make_user("Admin", username="ivy"))


def qcow2(tmp_path, size="4M") -> bytes:
    path = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path.read_bytes()


def vhdx(tmp_path) -> bytes:
    path = tmp_path / "disk.vhdx"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vhdx", str(path), "8M"], check=True)
    return path.read_bytes()


def raw_disk() -> bytes:
    data = bytearray(1024 * 1024)
    data[510:512] = b"\x55\xaa"
    return bytes(data)


def targz() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        payload = b"root filesystem\n" * 100
        info = tarfile.TarInfo("etc/os-release")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def wim(total=4096) -> bytes:
    header = bytearray(208)
    header[:8] = b"MSWIM\x00\x00\x00"
    struct.pack_into("<I", header, 8, 208)
    for at, offset in ((0x30, 1024), (0x48, 2048)):
        header[at : at + 7] = (512).to_bytes(7, "little")
        struct.pack_into("<Q", header, at + 8, offset)
    return bytes(header) + b"\x00" * (total - 208)


def squashfs(total=8192, used=8192) -> bytes:
    header = bytearray(96)
    header[:4] = b"hsqs"
    struct.pack_into("<Q", header, 40, used)
    return bytes(header) + b"\x00" * (total - 96)


def _upload(client, content: bytes, *, name="ubuntu-2404", fmt="qcow2", arch="x86_64"):
    f = io.BytesIO(content)
    f.name = f"image.{fmt}"
    return client.post(
        "/api/v1/templates",
        {"name": name, "format": fmt, "arch": arch, "file": f},
        format="multipart",
    )


@pytest.mark.parametrize(
    "fmt,maker",
    [
        ("qcow2", qcow2),
        ("vhdx", vhdx),
        ("raw", lambda tmp: raw_disk()),
        ("tar.gz", lambda tmp: targz()),
        ("wim", lambda tmp: wim()),
        ("squashfs", lambda tmp: squashfs()),
    ],
)
def test_upload_each_format(
    admin_client, tmp_path, image_root, fmt, maker, django_capture_on_commit_callbacks
):
    content = maker(tmp_path)
    with django_capture_on_commit_callbacks(execute=True):
        resp = _upload(admin_client, content, fmt=fmt, name=f"img-{fmt.replace('.', '')}")
    assert resp.status_code == 201, resp.content
    latest = resp.json()["latest_version"]
    assert latest["sha256"] == hashlib.sha256(content).hexdigest()
    assert latest["size"] == len(content) and latest["format"] == fmt
    assert resp.json()["kind"] == imagefiles.kind_of(fmt)
    version = ImageTemplateVersion.objects.get()
    assert (image_root / version.path).read_bytes() == content
    assert not list((image_root / ".incoming").iterdir())  # no temporary left
    if fmt in ("qcow2", "vhdx"):  # converted to raw by the (eager) task
        assert version.conversion == "done", version.error
        raw = (image_root / version.raw_path).read_bytes()
        assert len(raw) == version.raw_size and version.virtual_size == len(raw)


@pytest.mark.parametrize(
    "fmt,content,words",
    [
        ("qcow2", b"not an image at all" * 100, "qcow2"),
        ("raw", b"\x00" * 1000, "512-byte"),
        ("vhdx", b"QFI\xfb" + b"\x00" * 1020, "VHDX"),
        ("tar.gz", gzip.compress(b"not a tar")[:10], "tar.gz"),
        ("wim", wim()[:1500], "truncated"),
        ("squashfs", squashfs(total=4096, used=8192), "truncated"),
        ("raw", b"", "empty"),
    ],
)
def test_wrong_or_truncated_upload_leaves_nothing(admin_client, image_root, fmt, content, words):
    resp = _upload(admin_client, content, fmt=fmt)
    assert resp.status_code == 400, resp.content
    assert words in str(resp.json())
    assert not ImageTemplate.objects.exists()
    stored = [p for p in image_root.rglob("*") if p.is_file()]
    assert stored == []


def test_truncated_qcow2_refused(admin_client, tmp_path, image_root):
    content = qcow2(tmp_path)
    resp = _upload(admin_client, content[: len(content) // 2])
    assert resp.status_code == 400
    assert not ImageTemplate.objects.exists()


def test_mislabelled_qcow2_as_raw_refused(admin_client, tmp_path):
    resp = _upload(admin_client, qcow2(tmp_path), fmt="raw")
    assert resp.status_code == 400 and "qcow2" in str(resp.json())


def test_versions_same_content_and_kind_rules(admin_client, tmp_path):
    content = qcow2(tmp_path)
    assert _upload(admin_client, content).status_code == 201
    assert _upload(admin_client, content).status_code == 200  # unchanged: no new version
    assert _upload(admin_client, qcow2(tmp_path, "8M")).json()["latest_version"]["number"] == 2
    resp = _upload(admin_client, targz(), fmt="tar.gz")
    assert resp.status_code == 400 and "block" in str(resp.json())
    template = ImageTemplate.objects.get()
    versions = admin_client.get(f"/api/v1/templates/{template.pk}/versions").json()["results"]
    assert [v["number"] for v in versions] == [2, 1]
    assert AuditEvent.objects.filter(action__startswith="template.").count() == 2


def test_too_large_upload_is_413(admin_client, settings, image_root):
    settings.PUREBOOT_MAX_IMAGE_BYTES = 2048
    resp = _upload(admin_client, raw_disk(), fmt="raw")
    assert resp.status_code == 413
    assert not [p for p in image_root.rglob("*") if p.is_file()]


def test_range_and_etag_download(admin_client, tmp_path):
    content = raw_disk()
    template_id = _upload(admin_client, content, fmt="raw").json()["id"]
    url = f"/api/v1/templates/{template_id}/versions/1/file"
    full = admin_client.get(url)
    assert full.status_code == 200
    assert b"".join(full.streaming_content) == content
    assert full["Content-Length"] == str(len(content)) and full["Accept-Ranges"] == "bytes"
    etag = full["ETag"]
    assert etag == f'"{hashlib.sha256(content).hexdigest()}"'
    part = admin_client.get(url, HTTP_RANGE="bytes=510-511")
    assert part.status_code == 206 and b"".join(part.streaming_content) == b"\x55\xaa"
    assert part["Content-Range"] == f"bytes 510-511/{len(content)}"
    tail = admin_client.get(url, HTTP_RANGE="bytes=-2")
    assert b"".join(tail.streaming_content) == content[-2:]
    assert admin_client.get(url, HTTP_RANGE=f"bytes={len(content)}-").status_code == 416
    assert admin_client.get(url, HTTP_RANGE="bytes=abc").status_code == 416
    assert admin_client.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert admin_client.head(url).status_code == 200


def test_accel_redirect(admin_client, settings):
    template_id = _upload(admin_client, raw_disk(), fmt="raw").json()["id"]
    settings.PUREBOOT_ACCEL_REDIRECT = "/protected-images/"
    resp = admin_client.get(f"/api/v1/templates/{template_id}/versions/1/file")
    version = ImageTemplateVersion.objects.get()
    assert resp["X-Accel-Redirect"] == f"/protected-images/{version.path}"


def test_raw_variant_of_converted_image(admin_client, tmp_path, django_capture_on_commit_callbacks):
    url = "/api/v1/templates/{}/versions/1/file?variant=raw"
    template_id = _upload(admin_client, qcow2(tmp_path)).json()["id"]
    assert admin_client.get(url.format(template_id)).status_code == 409  # not converted yet
    ImageTemplateVersion.objects.all().delete()
    ImageTemplate.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        template_id = _upload(admin_client, qcow2(tmp_path)).json()["id"]
    resp = admin_client.get(url.format(template_id))
    assert resp.status_code == 200
    assert len(b"".join(resp.streaming_content)) == 4 * 1024 * 1024


def test_delete_refused_while_a_pending_node_uses_it(
    admin_client, tmp_path, image_root, django_capture_on_commit_callbacks
):
    template_id = _upload(admin_client, qcow2(tmp_path), name="golden").json()["id"]
    # A workflow saved before image_deploy was refused (nothing runs it yet):
    # the template it names is still protected from deletion.
    workflow = Workflow.objects.create(name="deploy-golden")
    WorkflowVersion.objects.create(
        workflow=workflow,
        number=1,
        content="name: deploy-golden\n",
        definition={
            "name": "deploy-golden",
            "arch": ["x86_64"],
            "firmware": ["bios", "uefi"],
            "tasks": [{"type": "image_deploy", "image": "golden@1"}],
        },
        content_hash="0" * 64,
    )
    node = make_node()
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=workflow)
    resp = admin_client.delete(f"/api/v1/templates/{template_id}")
    assert resp.status_code == 409 and resp.json()["nodes"] == [node.pk]
    node_services.perform(node.pk, "unassign", node_services.SYSTEM)
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_client.delete(f"/api/v1/templates/{template_id}").status_code == 204
    assert not [p for p in image_root.rglob("*") if p.is_file()]


def test_operators_cannot_upload(api, site_a):
    client = api(make_user("Operator", sites=[site_a]))
    assert client.get("/api/v1/templates").status_code == 200
    assert _upload(client, raw_disk(), fmt="raw").status_code == 403


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "Bad Name", "format": "raw", "arch": "x86_64"},
        {"name": "ok", "format": "iso", "arch": "x86_64"},
        {"name": "ok", "format": "raw", "arch": "sparc"},
        {"name": "ok", "format": "raw", "arch": "x86_64", "file": "not a file"},
    ],
)
def test_bad_upload_fields_are_400(admin_client, image_root, fields):
    data = dict(fields)
    if "file" not in data:
        f = io.BytesIO(raw_disk())
        f.name = "x.img"
        data["file"] = f
    resp = admin_client.post("/api/v1/templates", data, format="multipart")
    assert resp.status_code == 400, resp.content
    assert not [p for p in image_root.rglob("*") if p.is_file()]


def test_qcow2_with_a_backing_file_is_refused(admin_client, tmp_path, image_root):
    secret = tmp_path / "host-secret"
    secret.write_bytes(b"host secret data\n" * 64)
    path = tmp_path / "evil.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(secret), str(path)],
        check=True,
    )
    resp = _upload(admin_client, path.read_bytes())
    assert resp.status_code == 400 and "backing file" in str(resp.json())
    assert not ImageTemplate.objects.exists()
    assert not [p for p in image_root.rglob("*") if p.is_file()]
