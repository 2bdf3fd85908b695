"""Hostile requests found by fuzzing the API: each must be a clear 4xx, never a 500."""

import pytest

from nodes.models import Node, Site
from tests.factories import make_node

pytestmark = pytest.mark.django_db


def test_lone_surrogates_are_refused_and_nothing_is_stored(api, admin_user):
    node = make_node(hostname="n1")
    client = api(admin_user)
    resp = client.generic(
        "PATCH",
        f"/api/v1/nodes/{node.pk}",
        '{"metadata": {"a": "\\ud800"}}',
        content_type="application/json",
    )
    assert resp.status_code == 400
    assert "surrogate" in resp.json()["detail"]
    assert client.get("/api/v1/nodes").status_code == 200
    assert Node.objects.get(pk=node.pk).metadata == {}


def test_deeply_nested_json_is_400_even_unauthenticated(api):
    body = "[" * 50000 + "]" * 50000
    resp = api().generic("POST", "/api/v1/auth/token", body, content_type="application/json")
    assert resp.status_code == 400


@pytest.mark.parametrize(
    "query",
    ["since=9999-12-31T23:59:59-23:59", "until=0001-01-01T00:00:00%2B23:59"],
)
def test_out_of_range_dates_are_400(api, admin_user, query):
    node = make_node()
    client = api(admin_user)
    assert client.get(f"/api/v1/audit?{query}").status_code == 400
    assert client.get(f"/api/v1/nodes/{node.pk}/events?{query}").status_code == 400


def test_options_on_docs_page_is_not_a_500(client):
    assert client.options("/api/v1/docs").status_code == 405


@pytest.mark.parametrize("charset", ["rot13", "zlib", "idna", "punycode", "base64"])
def test_odd_charsets_are_400(charset):
    from io import BytesIO

    from pureboot.wsgi import application

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/v1/nodes",
        "QUERY_STRING": "x=1",
        "CONTENT_TYPE": f"text/plain; charset={charset}",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.input": BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": BytesIO(),
    }
    status = []
    body = b"".join(application(environ, lambda s, h: status.append(s)))
    assert status[0].startswith("400"), status
    assert b"charset" in body


def test_utf8_charset_passes_the_guard():
    from io import BytesIO

    from pureboot.wsgi import application

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/v1/nodes",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/json; charset=UTF-8",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.input": BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": BytesIO(),
    }
    status = []
    b"".join(application(environ, lambda s, h: status.append(s)))
    assert status[0].startswith("401")  # reached the API, which wants credentials


def test_nul_in_retire_reason_is_400(api, admin_user):
    node = make_node()
    resp = api(admin_user).delete(f"/api/v1/nodes/{node.pk}?reason=a%00b")
    assert resp.status_code == 400
    assert Node.objects.get(pk=node.pk).state == "discovered"


@pytest.mark.parametrize("hostname", ["ſ-kelvin", "\u212aelvin", "İstanbul"])
def test_non_ascii_hostnames_are_refused(api, admin_user, hostname):
    resp = api(admin_user).post(
        "/api/v1/nodes",
        {"hostname": hostname, "interfaces": [{"mac": "52:54:00:00:99:01"}]},
        format="json",
    )
    assert resp.status_code == 400 and "hostname" in resp.json()


def test_control_characters_in_site_names_are_refused(api, admin_user):
    resp = api(admin_user).post("/api/v1/sites", {"name": "a\x0fb", "slug": "ab"}, format="json")
    assert resp.status_code == 400
    assert not Site.objects.filter(slug="ab").exists()


def test_unknown_api_path_is_json_404(client):
    resp = client.get("/api/v1/no-such-thing")
    assert resp.status_code == 404
    assert resp.json()["code"] == "not_found"


def test_node_filters_do_not_apply_to_a_nodes_own_endpoints(api, admin_user):
    node = make_node()
    client = api(admin_user)
    assert client.get(f"/api/v1/nodes/{node.pk}/transitions?state=active").status_code == 200
    assert isinstance(client.get(f"/api/v1/nodes/{node.pk}/transitions").json(), list)
