"""Who may use each of this app's URLs; tests/test_urls.py checks every pattern against it.

Object URLs are asked with an id nobody has: signed-in visitors get 404 (viewers 403 first where a role is
needed). tests/discovery/test_views.py asks them with real objects.
"""

from tests.test_urls import ADMIN, ALL_OK, ANON, LOGIN, OPERATOR, VIEWER

NOBODY = "5b0d1a3e-0000-4000-8000-000000000000"
ALL_404 = {ANON: LOGIN, VIEWER: 404, OPERATOR: 404, ADMIN: 404}
OPERATOR_404 = {ANON: LOGIN, VIEWER: 403, OPERATOR: 404, ADMIN: 404}
# An empty form is refused with a message and a redirect back.
OPERATOR_REDIRECT = {ANON: LOGIN, VIEWER: 403, OPERATOR: 302, ADMIN: 302}

EXPECTED = {
    "discovery:origin_list": ("get", {}, ALL_OK),
    "discovery:origin_bulk": ("post", {}, OPERATOR_REDIRECT),
    "discovery:origin_export": ("get", {}, ALL_OK),
    "discovery:origin_detail": ("get", {"public_id": NOBODY}, ALL_404),
    "discovery:origin_review": ("post", {"public_id": NOBODY}, OPERATOR_404),
    "discovery:application_list": ("get", {}, ALL_OK),
    "discovery:application_create": ("post", {}, OPERATOR_REDIRECT),
    "discovery:application_detail": ("get", {"public_id": NOBODY}, ALL_404),
    "discovery:application_protect": ("post", {"public_id": NOBODY}, OPERATOR_404),
    "discovery:application_unprotect": ("post", {"public_id": NOBODY}, OPERATOR_404),
    "discovery:application_protect_retry": ("post", {"public_id": NOBODY}, OPERATOR_404),
    "discovery:application_rename": ("post", {"public_id": NOBODY}, OPERATOR_404),
    "discovery:application_delete": ("post", {"public_id": NOBODY}, OPERATOR_404),
    "discovery:application_origin_remove": ("post", {"public_id": NOBODY, "origin_id": NOBODY}, OPERATOR_404),
    "discovery:access_policies_refresh": ("post", {}, OPERATOR_REDIRECT),
    "discovery:ingest_list": ("get", {}, ALL_OK),
}
