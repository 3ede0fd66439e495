import pytest
from django.test import Client

from dashboard.models import User
from tests.factories import make_user


@pytest.fixture
def viewer(db):
    return make_user(role=User.Role.VIEWER, email="viewer@example.com")


@pytest.fixture
def operator(db):
    return make_user(role=User.Role.OPERATOR, email="operator@example.com")


@pytest.fixture
def admin(db):
    return make_user(role=User.Role.ADMIN, email="admin@example.com")


def _client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(viewer):
    return _client_for(viewer)


@pytest.fixture
def operator_client(operator):
    return _client_for(operator)


@pytest.fixture
def admin_client(admin):
    return _client_for(admin)


@pytest.fixture
def htmx_headers():
    return {"HX-Request": "true"}
