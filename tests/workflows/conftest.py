"""Fixtures for tests/workflows: report_server, the controller's report endpoint on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .installer_helpers import report_controller


@pytest.fixture
def report_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with report_controller([]) as server:
        yield server
