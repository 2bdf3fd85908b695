import pytest

from tests.factories import make_user


@pytest.fixture
def admin_user(db):
    return make_user("Admin", username="alice-admin")


@pytest.fixture
def operator_a(db, site_a):
    return make_user("Operator", sites=[site_a], username="oscar-op")
