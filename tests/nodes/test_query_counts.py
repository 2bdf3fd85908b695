"""Hot API lists cost a fixed number of queries, however many rows they return."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import make_node, make_user, make_workflow

pytestmark = pytest.mark.django_db


def _queries(client, url) -> int:
    client.get(url)  # warm up: the user's permissions are cached after the first request
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("role", ["Admin", "Operator"])
def test_node_list_queries_do_not_grow_with_nodes(api, site_a, role):
    client = api(make_user(role, sites=[site_a]))
    for i in range(3):
        make_node(site=site_a, hostname=f"a{i}")
    few = _queries(client, "/api/v1/nodes")
    for i in range(30):
        make_node(site=site_a, hostname=f"b{i}", macs=[f"52:54:00:aa:{i // 256:02x}:{i % 256:02x}"])
    many = _queries(client, "/api/v1/nodes")
    assert many == few, (few, many)
    assert many <= 10


def test_workflow_list_queries_do_not_grow(api):
    client = api(make_user("Admin"))
    for i in range(2):
        make_workflow(f"w{i}")
    few = _queries(client, "/api/v1/workflows")
    for i in range(10):
        make_workflow(f"x{i}")
    many = _queries(client, "/api/v1/workflows")
    assert many == few, (few, many)
