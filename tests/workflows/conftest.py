"""Fixtures for tests/workflows: report_server, the controller's report endpoint on
127.0.0.1; ubuntu_boot_image, the boot image the shipped Ubuntu examples name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .examples import UBUNTU_IMAGE
from .installer_helpers import report_controller


@pytest.fixture
def report_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with report_controller([]) as server:
        yield server


@pytest.fixture
def ubuntu_boot_image(db):
    """The row import_iso registers for an Ubuntu 24.04.2 live-server ISO (no files on
    disk: tests that boot from it import a real ISO, tests/bootserve/test_install_media.py)."""
    from workflows.models import BootImage

    def meta(name: str, size: int) -> dict[str, Any]:
        return {"name": name, "sha256": "0" * 64, "size": size}

    return BootImage.objects.create(
        name=UBUNTU_IMAGE,
        family="ubuntu",
        version="24.04.2",
        arch="x86_64",
        files={
            "kernel": meta("vmlinuz", 1),
            "initrd": meta("initrd", 1),
            "iso": meta("install.iso", 1),
        },
    )
