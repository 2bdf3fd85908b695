import pytest
from rest_framework.test import APIClient

from tests.factories import SiteFactory, make_user


@pytest.fixture
def site_a(db):
    return SiteFactory(name="Site A", slug="site-a")


@pytest.fixture
def site_b(db):
    return SiteFactory(name="Site B", slug="site-b")


@pytest.fixture
def api():
    """An API client factory: ``api(user)`` is authenticated as ``user``."""

    def make(user=None):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def admin_user(db):
    return make_user("Admin", username="alice-admin")


@pytest.fixture
def operator_a(db, site_a):
    return make_user("Operator", sites=[site_a], username="oscar-op")
