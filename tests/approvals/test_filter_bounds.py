"""The approvals list's ``?node=`` filter: a number no node id can be is a 400.

Found by schemathesis (tests/test_api_fuzz.py): ``?node=-3.7e+70`` reached the
database as an integer it cannot hold and answered 500.
"""

import pytest

from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("node", ["-3.72591540736863e+70", "1.2796899722085084e+20", "1e400"])
def test_a_node_id_out_of_range_is_a_bad_request(api, node):
    resp = api(make_user("Admin")).get("/api/v1/approvals", {"node": node})
    assert resp.status_code == 400, resp.content
    assert "node" in resp.json()


@pytest.mark.parametrize("node", ["0", "-1", "1.5"])
def test_a_node_id_that_is_not_one_is_a_bad_request(api, node):
    assert api(make_user("Admin")).get("/api/v1/approvals", {"node": node}).status_code == 400


def test_a_node_id_filters(api):
    resp = api(make_user("Admin")).get("/api/v1/approvals", {"node": "123"})
    assert resp.status_code == 200 and resp.json()["results"] == []
