import pytest
from rest_framework.test import APIClient

from tests.factories import SiteFactory


@pytest.fixture
def api():
    def make(user=None):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def site_a(db):
    return SiteFactory(name="Site A", slug="site-a")
