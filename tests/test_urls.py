"""Every URL pattern, asked by an anonymous visitor and by each role, answers what it should."""

import importlib

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from dashboard.models import User
from tests.factories import make_user

ANON, VIEWER, OPERATOR, ADMIN = "anonymous", "viewer", "operator", "admin"
LOGIN = "sign-in redirect"
ALL_OK = {ANON: LOGIN, VIEWER: 200, OPERATOR: 200, ADMIN: 200}

# name -> (method, kwargs, answer per visitor). A pattern missing here fails the test, so a new view
# cannot ship without someone deciding who may use it.
EXPECTED = {
    "dashboard:home": ("get", {}, ALL_OK),
    "dashboard:audit_list": ("get", {}, ALL_OK),
    "dashboard:audit_export": ("get", {}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 403, ADMIN: 200}),
    "dashboard:settings": ("get", {}, ALL_OK),
    "dashboard:user_role_update": (
        "post",
        {"public_id": "TARGET"},
        {ANON: LOGIN, VIEWER: 403, OPERATOR: 403, ADMIN: 302},
    ),
    # Admins connect and disconnect Cloudflare's push events.
    "dashboard:push_connect": ("post", {}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 403, ADMIN: 302}),
    "dashboard:push_disconnect": ("post", {}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 403, ADMIN: 302}),
    # Everyone sees how a change to push events went; admins retry one that stopped.
    "dashboard:push_change_detail": (
        "get",
        {"public_id": "8f0c3f5e-3c1a-4a57-9b59-1d1d7c7f0a11"},
        {ANON: LOGIN, VIEWER: 404, OPERATOR: 404, ADMIN: 404},
    ),
    "dashboard:push_change_retry": (
        "post",
        {"public_id": "8f0c3f5e-3c1a-4a57-9b59-1d1d7c7f0a11"},
        {ANON: LOGIN, VIEWER: 403, OPERATOR: 403, ADMIN: 404},
    ),
    # Cloudflare's webhook needs no session: without the shared secret in cf-webhook-auth it is refused, 401.
    "dashboard:push_webhook": ("post", {}, {ANON: 401, VIEWER: 401, OPERATOR: 401, ADMIN: 401}),
    # Signed-in people are sent on from the sign-in page; everyone may reach it.
    "account_login": ("get", {}, {ANON: 200, VIEWER: 302, OPERATOR: 302, ADMIN: 302}),
    "account_logout": ("get", {}, {ANON: 302, VIEWER: 200, OPERATOR: 200, ADMIN: 200}),
    "account_inactive": ("get", {}, {ANON: 200, VIEWER: 200, OPERATOR: 200, ADMIN: 200}),
    "socialaccount_login_cancelled": ("get", {}, {ANON: 200, VIEWER: 200, OPERATOR: 200, ADMIN: 200}),
    # Sign-in failures answer 401 with an explanation; the error page is allauth's and needs a session.
    "socialaccount_login_error": ("get", {}, {ANON: LOGIN, VIEWER: 401, OPERATOR: 401, ADMIN: 401}),
    # Only reachable in the middle of a sign-in; otherwise back to the sign-in page.
    "socialaccount_signup": ("get", {}, {ANON: 302, VIEWER: 302, OPERATOR: 302, ADMIN: 302}),
    "openid_connect_login": (
        "get",
        {"provider_id": "google"},
        {ANON: 200, VIEWER: 200, OPERATOR: 200, ADMIN: 200},
    ),
    # A callback with no authorization code from Google is a failed sign-in.
    "openid_connect_callback": (
        "get",
        {"provider_id": "google"},
        {ANON: 401, VIEWER: 401, OPERATOR: 401, ADMIN: 401},
    ),
}


# Each domain app keeps its own table beside its tests.
for _app in ("tunnels", "discovery", "vendors", "alerts"):
    EXPECTED.update(importlib.import_module(f"tests.{_app}.url_expectations").EXPECTED)


def _patterns(patterns, namespace=None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = namespace
            if pattern.namespace:
                inner = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
            yield from _patterns(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern):
            yield (f"{namespace}:{pattern.name}" if namespace else pattern.name), pattern


def test_every_url_pattern_is_named_and_has_an_expectation():
    names = [name for name, _ in _patterns(get_resolver().url_patterns)]
    assert all(names), "every URL pattern needs a name"
    assert sorted(names) == sorted(EXPECTED)


def test_only_cloudflares_webhook_is_csrf_exempt():
    # Cloudflare posts without a session or a CSRF token; the shared secret is checked on every request instead.
    exempt = [
        name
        for name, p in _patterns(get_resolver().url_patterns)
        if getattr(p.callback, "csrf_exempt", False)
    ]
    assert exempt == ["dashboard:push_webhook"]


@pytest.mark.parametrize("visitor", [ANON, VIEWER, OPERATOR, ADMIN])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_url_answers_each_visitor_as_expected(client, db, name, visitor):
    method, kwargs, answers = EXPECTED[name]
    target = make_user(email="target@example.com")
    make_user(role=User.Role.ADMIN, email="other-admin@example.com")
    if visitor != ANON:
        client.force_login(make_user(role=visitor, email=f"{visitor}@example.com"))
    kwargs = {k: (target.public_id if v == "TARGET" else v) for k, v in kwargs.items()}
    url = reverse(name, kwargs=kwargs)
    data = {"role": "operator"} if method == "post" else {}
    response = getattr(client, method)(url, data)
    expected = answers[visitor]
    if expected == LOGIN:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login") + "?next=")
    else:
        assert response.status_code == expected, response.content[:500]


@pytest.mark.parametrize(
    "name",
    [
        n
        for n, (m, _, a) in EXPECTED.items()
        if n.split(":")[0] in {"dashboard", "tunnels", "discovery", "vendors", "alerts"}
    ],
)
def test_gatehouse_views_refuse_the_wrong_method(admin_client, name):
    method, kwargs, _ = EXPECTED[name]
    target = make_user(email="target@example.com")
    kwargs = {k: (target.public_id if v == "TARGET" else v) for k, v in kwargs.items()}
    wrong = admin_client.post if method == "get" else admin_client.get
    assert wrong(reverse(name, kwargs=kwargs)).status_code == 405


def test_unknown_ids_are_404(admin_client):
    url = reverse("dashboard:user_role_update", kwargs={"public_id": "00000000-0000-0000-0000-000000000000"})
    assert admin_client.post(url, {"role": "viewer"}).status_code == 404
