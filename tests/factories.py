"""Test data builders. Rows are made through the same models the product writes."""

import itertools

from dashboard.models import User

_counter = itertools.count(1)


def make_user(*, role: str = User.Role.VIEWER, email: str | None = None) -> User:
    email = email or f"person{next(_counter)}@example.com"
    return User.objects.create_user(email=email, role=role)
