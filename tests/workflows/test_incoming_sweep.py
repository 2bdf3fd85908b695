"""Nothing half-done: temporary files of interrupted uploads are swept.

Red team: killing the server mid-upload left .incoming files that were never cleaned.
"""

from __future__ import annotations

import os
import time

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
