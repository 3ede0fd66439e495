"""Who may use each of this app's URLs; tests/test_urls.py checks every pattern against it."""

from tests.test_urls import ADMIN, ALL_OK, ANON, LOGIN, OPERATOR, VIEWER

UNKNOWN = "00000000-0000-4000-8000-000000000000"

EXPECTED = {
    "alerts:alert_list": ("get", {}, ALL_OK),
    "alerts:channel_list": ("get", {}, ALL_OK),
    # The posted form is empty, so an admin gets the form back with its errors.
    "alerts:channel_create": ("post", {}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 403, ADMIN: 400}),
    "alerts:channel_delete": ("post", {"channel_id": UNKNOWN}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 403, ADMIN: 404}),
    "alerts:delivery_retry": ("post", {"delivery_id": UNKNOWN}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 404, ADMIN: 404}),
    "alerts:alert_acknowledge": ("post", {"alert_id": UNKNOWN}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 404, ADMIN: 404}),
    "alerts:alert_silence": ("post", {"alert_id": UNKNOWN}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 404, ADMIN: 404}),
}
