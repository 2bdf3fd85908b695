"""Nothing half-done: temporary files of interrupted uploads are swept.

Red team: killing the server mid-upload left .incoming files that were never cleaned.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from pureboot.celery import app
from workflows import imagefiles


@pytest.fixture
def incoming(settings, tmp_path):
    settings.PUREBOOT_IMAGE_ROOT = tmp_path / "images"
    return imagefiles.image_root() / ".incoming"


def _file(folder, name: str, age_minutes: float):
    path = folder / name
    path.write_bytes(b"partial upload")
    then = time.time() - age_minutes * 60
    os.utime(path, (then, then))
    return path


def test_stale_files_go_and_uploads_in_progress_stay(incoming, settings):
    settings.PUREBOOT_INCOMING_STALE_MINUTES = 60
    stale = _file(incoming, "upload-killed", 61)
    converting = _file(incoming, "convert-running", 1)
    assert imagefiles.sweep_incoming() == 1
    assert not stale.exists() and converting.exists()


@pytest.mark.django_db
def test_bootstrap_sweeps_at_start(incoming, capsys):
    stale = _file(incoming, "upload-killed", 24 * 60)
    call_command("bootstrap")
    assert not stale.exists()
    assert "Removed 1 abandoned upload file(s)." in capsys.readouterr().out


def test_a_periodic_task_sweeps_too():
    app.loader.import_default_modules()
    app.finalize()
    names = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "workflows.sweep_incoming" in names
    assert "workflows.sweep_incoming" in app.tasks


def _age(path, minutes: float) -> None:
    then = time.time() - minutes * 60
    os.utime(path, (then, then))


def test_an_upload_in_progress_is_kept_however_long_it_has_not_written(incoming, settings):
    """Quiet is not abandoned: the upload's request still holds its file (a slow
    client, a long format check); only once it lets go does age decide."""
    settings.PUREBOOT_INCOMING_STALE_MINUTES = 60
    upload = imagefiles.HashedTemporaryFile("disk.qcow2", "application/octet-stream", None)
    upload.write(b"QFI\xfb partial")
    upload.flush()
    path = Path(upload.temporary_file_path())
    _age(path, 3 * 60)
    assert imagefiles.sweep_incoming() == 0 and path.exists()
    upload.close()  # the request ended without moving it into storage
    assert imagefiles.sweep_incoming() == 1 and not path.exists()


def test_a_conversion_in_progress_is_kept(incoming, settings, monkeypatch, tmp_path):
    settings.PUREBOOT_INCOMING_STALE_MINUTES = 1
    swept = []

    def slow_qemu_img(argv, timeout):  # qemu-img convert, quiet for hours
        target = Path(argv[-1])
        target.write_bytes(b"\0" * 512)
        _age(target, 5 * 60)
        swept.append(imagefiles.sweep_incoming())
        assert target.exists()
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(imagefiles.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(imagefiles, "qemu_img_info", lambda path, fmt: {})
    monkeypatch.setattr(imagefiles, "_run", slow_qemu_img)
    source = tmp_path / "source.qcow2"
    source.write_bytes(b"QFI\xfb")
    relative, size, _ = imagefiles.convert_to_raw(source, "qcow2")
    assert swept == [0] and size == 512
    assert (imagefiles.image_root() / relative).exists()
    assert not list(incoming.iterdir())


WRITER_KILLED = """
import os, signal, sys
from workflows import imagefiles
held = imagefiles.hold(sys.argv[1])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_writer_lets_go(incoming, settings):
    """The mark dies with its process: a server killed mid-upload leaves a file the
    sweep removes once it is old enough."""
    path = _file(incoming, "upload-killed", 0)
    done = subprocess.run(
        [sys.executable, "-c", WRITER_KILLED, str(path)],
        cwd=settings.BASE_DIR,
        env=os.environ | {"PYTHONPATH": str(settings.BASE_DIR)},
        timeout=60,
    )
    assert done.returncode == -9
    assert imagefiles.sweep_incoming() == 0  # young: an upload may have just begun
    _age(path, settings.PUREBOOT_INCOMING_STALE_MINUTES + 1)
    assert imagefiles.sweep_incoming() == 1 and not path.exists()


def test_a_worker_sweeps_when_it_starts(monkeypatch):
    from celery import signals

    class Consumer:  # what worker_ready is sent by
        pass

    consumer = Consumer()
    consumer.app = app
    sent = []

    class Signature:
        def __init__(self, name):
            self.name = name

        def delay(self):
            sent.append(self.name)

    monkeypatch.setattr(app, "signature", Signature)
    signals.worker_ready.send(sender=consumer)
    assert sent == ["workflows.sweep_incoming"]
