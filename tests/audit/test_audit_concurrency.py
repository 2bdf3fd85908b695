"""Concurrent writers on PostgreSQL still produce one gapless, linear chain."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from audit.models import AuditEvent
from audit.services import record, verify_chain

THREADS = 8
PER_THREAD = 25


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_keep_the_chain_linear():
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            barrier.wait(timeout=30)  # start together to maximise contention
            for i in range(PER_THREAD):
                with transaction.atomic():
                    record(actor="system", action="test.concurrent", object_id=f"{worker}-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connection.close()  # each thread has its own connection; release it

    threads = [threading.Thread(target=append, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    total = THREADS * PER_THREAD
    assert list(AuditEvent.objects.values_list("seq", flat=True)) == list(range(1, total + 1))
    assert AuditEvent.objects.values("object_id").distinct().count() == total
    report = verify_chain(chunk_size=64)
    assert report.intact, str(report)
    assert (report.count, report.last_seq) == (total, total)
