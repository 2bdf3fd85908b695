"""A qcow2 template upload is converted to raw by the real Celery worker."""

from __future__ import annotations

import io
import subprocess
import time

import pytest

from tests.factories import make_user
from workflows.models import ImageTemplateVersion

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_worker_converts_qcow2_to_raw(celery_worker_process, api, tmp_path):
    path = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "2M"], check=True)
    upload = io.BytesIO(path.read_bytes())
    upload.name = "disk.qcow2"
    client = api(make_user("Admin"))
    resp = client.post(
        "/api/v1/templates",
        {"name": "golden", "format": "qcow2", "arch": "x86_64", "file": upload},
        format="multipart",
    )
    assert resp.status_code == 201, resp.content
    deadline = time.monotonic() + 60
    version = ImageTemplateVersion.objects.get()
    while version.conversion == "pending" and time.monotonic() < deadline:
        time.sleep(0.3)
        version.refresh_from_db()
    assert version.conversion == "done", (version.error, celery_worker_process.log_tail())
    assert version.raw_size == 2 * 1024 * 1024
