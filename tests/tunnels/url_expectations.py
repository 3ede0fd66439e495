"""Who may use each of this app's URLs; tests/test_urls.py checks every pattern against it."""

from tests.test_urls import ADMIN, ALL_OK, ANON, LOGIN, OPERATOR, VIEWER

UNKNOWN = "00000000-0000-4000-8000-000000000000"
ALL_404 = {ANON: LOGIN, VIEWER: 404, OPERATOR: 404, ADMIN: 404}
CHANGERS_404 = {ANON: LOGIN, VIEWER: 403, OPERATOR: 404, ADMIN: 404}

EXPECTED = {
    "tunnels:tunnel_list": ("get", {}, ALL_OK),
    "tunnels:route_list": ("get", {}, ALL_OK),
    "tunnels:tunnel_new": ("get", {}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 200, ADMIN: 200}),
    # The posted form has no name, so operators get the form back with its errors.
    "tunnels:tunnel_create": ("post", {}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 400, ADMIN: 400}),
    "tunnels:tunnel_detail": ("get", {"tunnel_id": UNKNOWN}, ALL_404),
    "tunnels:change_detail": ("get", {"change_id": UNKNOWN}, ALL_404),
    "tunnels:change_token": ("post", {"change_id": UNKNOWN}, CHANGERS_404),
    "tunnels:change_retry": ("post", {"change_id": UNKNOWN}, CHANGERS_404),
    "tunnels:hostname_add": ("post", {"tunnel_id": UNKNOWN}, CHANGERS_404),
    "tunnels:hostname_remove": ("post", {"tunnel_id": UNKNOWN}, CHANGERS_404),
    "tunnels:route_add": ("post", {"tunnel_id": UNKNOWN}, CHANGERS_404),
    "tunnels:route_remove": ("post", {"route_id": UNKNOWN}, CHANGERS_404),
    "tunnels:tunnel_delete_confirm": ("get", {"tunnel_id": UNKNOWN}, CHANGERS_404),
    "tunnels:tunnel_delete": ("post", {"tunnel_id": UNKNOWN}, CHANGERS_404),
    "tunnels:connections_cleanup": ("post", {"tunnel_id": UNKNOWN}, CHANGERS_404),
    "tunnels:token_rotate_confirm": ("get", {"tunnel_id": UNKNOWN}, CHANGERS_404),
    "tunnels:token_rotate": ("post", {"tunnel_id": UNKNOWN}, CHANGERS_404),
    "tunnels:vnet_list": ("get", {}, ALL_OK),
    # The posted form has no name, so operators get the page back with the error.
    "tunnels:vnet_create": ("post", {}, {ANON: LOGIN, VIEWER: 403, OPERATOR: 400, ADMIN: 400}),
    "tunnels:vnet_rename": ("post", {"vnet_id": UNKNOWN}, CHANGERS_404),
    "tunnels:vnet_delete_confirm": ("get", {"vnet_id": UNKNOWN}, CHANGERS_404),
    "tunnels:vnet_delete": ("post", {"vnet_id": UNKNOWN}, CHANGERS_404),
}
