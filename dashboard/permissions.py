from functools import wraps
from typing import Any, cast

from django.core.exceptions import PermissionDenied

from dashboard.models import User


def role_required(role: User.Role):
    """Refuse (403) users below `role`. LoginRequiredMiddleware already demands sign-in for every view."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated or not request.user.has_role(role):
                raise PermissionDenied(f"This needs the {role.label.lower()} role.")
            return view(request, *args, **kwargs)

        cast(Any, wrapped).required_role = role  # a view's role, for tests that check every view
        return wrapped

    return decorator
