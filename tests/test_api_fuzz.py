"""No 5xx from the API: schemathesis fuzzes every operation of the OpenAPI schema.

Each operation gets generated requests as an Admin with a JWT, through the
real WSGI application: requests that fit the schema (positive) and requests
that break it (negative: wrong types, out-of-range numbers, missing or extra
fields, bad paths and parameters). Any answer of 500 or more fails the test,
naming the operation and the request. Derandomized, so a run is repeatable;
bounded per operation and mode (PUREBOOT_FUZZ_EXAMPLES, default 25) to fit CI
(about a minute).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from pureboot.wsgi import application
from tests.factories import make_user

EXAMPLES = int(os.environ.get("PUREBOOT_FUZZ_EXAMPLES", "25"))


@pytest.fixture
def bearer(client):
    user = make_user("Admin", username="fuzz-admin")
    user.set_password("fuzz-horse-battery-9")
    user.save()
    resp = client.post(
        "/api/v1/auth/token",
        {"username": "fuzz-admin", "password": "fuzz-horse-battery-9"},
        content_type="application/json",
    )
    return {"Authorization": f"Bearer {resp.json()['access']}"}


@pytest.mark.django_db
def test_no_operation_answers_with_a_server_error(bearer, keep_test_connection):
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema", application)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    server_errors: list[str] = []
    statuses: list[int] = []
    for mode, operation in ((m, op) for m in GenerationMode for op in operations):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case):
            response = case.call(headers=bearer)
            statuses.append(response.status_code)
            if response.status_code >= 500:
                server_errors.append(
                    f"{case.meta.generation.mode.value} "
                    f"{case.operation.method.upper()} {case.operation.path}: "
                    f"{response.status_code} for "
                    f"{case.formatted_path} query={case.query} body={str(case.body)[:200]}"
                )

        try:
            fuzz()
        except Unsatisfiable:
            # An operation that takes no input at all (GET /api/v1/agent/job) has
            # no invalid request to send; its valid one ran in the positive mode.
            assert mode == GenerationMode.NEGATIVE, operation.path
    assert not server_errors, "\n".join(server_errors[:20])
    assert len(statuses) >= len(operations)  # every operation was called
    assert sum(200 <= s < 300 for s in statuses) > len(operations) // 2  # and many got through
