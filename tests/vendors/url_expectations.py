"""Who may use each of this app's URLs; tests/test_urls.py checks every pattern against it."""

from tests.test_urls import ADMIN, ALL_OK, ANON, LOGIN, OPERATOR, VIEWER

UNKNOWN = "8f0c3f5e-3c1a-4a57-9b59-1d1d7c7f0a11"
OPERATORS_ONLY = {ANON: LOGIN, VIEWER: 403, OPERATOR: 200, ADMIN: 200}
# Operators reach the view, which finds no such object.
OPERATOR_POST_UNKNOWN = {ANON: LOGIN, VIEWER: 403, OPERATOR: 404, ADMIN: 404}
READ_UNKNOWN = {ANON: LOGIN, VIEWER: 404, OPERATOR: 404, ADMIN: 404}

EXPECTED = {
    "vendors:vendor_list": ("get", {}, ALL_OK),
    "vendors:vendor_new": ("get", {}, OPERATORS_ONLY),
    # The form posted empty is answered with its errors.
    "vendors:vendor_create": ("post", {}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 400, ADMIN: 400}),
    "vendors:application_list": ("get", {}, ALL_OK),
    "vendors:apps_refresh": ("post", {}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 302, ADMIN: 302}),
    "vendors:settings_update": ("post", {}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 403, ADMIN: 302}),
    "vendors:vendor_detail": ("get", {"public_id": UNKNOWN}, READ_UNKNOWN),
    "vendors:vendor_edit": ("get", {"public_id": UNKNOWN}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 404, ADMIN: 404}),
    "vendors:vendor_update": ("post", {"public_id": UNKNOWN}, OPERATOR_POST_UNKNOWN),
    "vendors:vendor_revoke_confirm": (
        "get",
        {"public_id": UNKNOWN},
        {ANON: LOGIN, VIEWER: 403, OPERATOR: 404, ADMIN: 404},
    ),
    "vendors:vendor_revoke": ("post", {"public_id": UNKNOWN}, OPERATOR_POST_UNKNOWN),
    "vendors:run_detail": ("get", {"public_id": UNKNOWN}, READ_UNKNOWN),
    "vendors:run_retry": ("post", {"public_id": UNKNOWN}, OPERATOR_POST_UNKNOWN),
    "vendors:grant_extend": ("post", {"public_id": UNKNOWN}, OPERATOR_POST_UNKNOWN),
    "vendors:token_reveal": ("post", {"public_id": UNKNOWN}, OPERATOR_POST_UNKNOWN),
    # Nothing ticked: operators are sent back to the list with a message.
    "vendors:vendors_revoke_confirm": ("get", {}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 302, ADMIN: 302}),
    "vendors:vendors_revoke": ("post", {}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 302, ADMIN: 302}),
    "vendors:grant_update": ("post", {"public_id": UNKNOWN}, OPERATOR_POST_UNKNOWN),
    "vendors:grant_end": ("post", {"public_id": UNKNOWN}, OPERATOR_POST_UNKNOWN),
    "vendors:grant_end_confirm": ("get", {"public_id": UNKNOWN}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 404, ADMIN: 404}),
    # Operators see what could be adopted; only admins adopt (an unknown policy is not found).
    "vendors:adopt_list": ("get", {}, OPERATORS_ONLY),
    "vendors:adopt_confirm": ("get", {"policy_id": UNKNOWN}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 403, ADMIN: 404}),
    "vendors:adopt_create": ("post", {"policy_id": UNKNOWN}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 403, ADMIN: 404}),
    "vendors:vendor_archive": ("post", {"public_id": UNKNOWN}, OPERATOR_POST_UNKNOWN),
    "vendors:drift_check": ("post", {"public_id": UNKNOWN}, OPERATOR_POST_UNKNOWN),
    "vendors:drift_reapply": ("post", {"public_id": UNKNOWN}, OPERATOR_POST_UNKNOWN),
    "vendors:token_rotate": ("post", {"public_id": UNKNOWN}, OPERATOR_POST_UNKNOWN),
    "vendors:token_refresh": ("post", {"public_id": UNKNOWN}, OPERATOR_POST_UNKNOWN),
    "vendors:token_change_detail": ("get", {"public_id": UNKNOWN}, READ_UNKNOWN),
    "vendors:token_change_retry": ("post", {"public_id": UNKNOWN}, OPERATOR_POST_UNKNOWN),
}
