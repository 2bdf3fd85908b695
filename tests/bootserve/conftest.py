"""Each test starts with no boot record memory (coalescing, per-address caps)."""

import pytest

from bootserve import records


@pytest.fixture(autouse=True)
def _fresh_boot_record_memory():
    records.forget()
    yield
    records.forget()
