"""The read-only audit API: who may read, filters, ordering, refusals."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from audit import context
from audit.services import record

pytestmark = pytest.mark.django_db

URL = "/api/v1/audit"


def client_for(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def events(db):
    token = context.set_current(context.RequestContext("req-abc", "192.0.2.7"))
    try:
        record(actor="user:alice", action="node.create", object_type="nodes.node", object_id=1)
    finally:
        context.reset(token)
    record(actor="user:bob", action="node.update", object_type="nodes.node", object_id=1)
    record(actor="user:bob", action="node.assign", object_type="nodes.node", object_id=2)
    record(actor="system", action="workflow.create", object_type="workflows.workflow", object_id=1)


def seqs(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["seq"] for row in response.data["results"]]


@pytest.mark.parametrize("user_fixture", ["auditor", "admin_user"])
def test_readers_see_the_trail_newest_first(request, events, user_fixture):
    user = request.getfixturevalue(user_fixture)
    response = client_for(user).get(URL)
    assert seqs(response) == [4, 3, 2, 1]
    first = response.data["results"][-1]
    assert first["request_id"] == "req-abc"
    assert first["source_ip"] == "192.0.2.7"
    assert len(first["hash"]) == len(first["prev_hash"]) == 64


def test_list_query_count_is_flat(auditor, events, django_assert_max_num_queries):
    # user and group permissions, page count, page rows: none per event; and the
    # per-user throttle's counter in the shared store (database cache: read,
    # count, and a write in a savepoint: six statements), which every process sees
    with django_assert_max_num_queries(10):
        assert client_for(auditor).get(URL).status_code == 200


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("object_type=nodes.node", [3, 2, 1]),
        ("object_type=nodes.node&object_id=1", [2, 1]),
        ("actor=user:bob", [3, 2]),
        ("action=node.assign", [3]),
        ("request_id=req-abc", [1]),
        ("actor=user:nobody", []),
        ("ordering=seq", [1, 2, 3, 4]),
        ("ordering=-timestamp", [4, 3, 2, 1]),
        ("since=2000-01-01T00:00:00Z", [4, 3, 2, 1]),
        ("until=2000-01-01T00:00:00Z", []),
        ("since=2999-01-01T00:00:00%2B02:00", []),
    ],
)
def test_filters(auditor, events, query, expected):
    assert seqs(client_for(auditor).get(f"{URL}?{query}")) == expected


def test_retrieve_by_seq(auditor, events):
    client = client_for(auditor)
    response = client.get(f"{URL}/3")
    assert response.status_code == 200
    assert (response.data["seq"], response.data["action"]) == (3, "node.assign")
    assert client.get(f"{URL}/99").status_code == 404
    assert client.get(f"{URL}/{'9' * 19}").status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        "actor=%00",
        "object_id=ab%00cd",
        "request_id=%00",
        "since=not-a-date",
        "until=2024-13-45T99:00:00Z",
        "since=2024-01-01%00",
    ],
)
def test_bad_filter_values_are_400(auditor, events, query):
    response = client_for(auditor).get(f"{URL}?{query}")
    assert response.status_code == 400, response.content
    assert isinstance(response.data, dict) and response.data


def test_user_without_the_permission_gets_403(plain_user, events):
    client = client_for(plain_user)
    assert client.get(URL).status_code == 403
    assert client.get(f"{URL}/1").status_code == 403
    assert client.post(URL, {}, format="json").status_code == 403


def test_anonymous_gets_401():
    response = client_for().get(URL)
    assert response.status_code == 401


def test_inactive_reader_is_refused(auditor, events):
    auditor.is_active = False
    auditor.save()
    assert client_for(auditor).get(URL).status_code in {401, 403}


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_writes_are_not_allowed(auditor, admin_user, events, method):
    for user, path in [(auditor, URL), (auditor, f"{URL}/1"), (admin_user, f"{URL}/1")]:
        response = getattr(client_for(user), method)(path, {"actor": "x"}, format="json")
        assert response.status_code == 405, (method, path)
