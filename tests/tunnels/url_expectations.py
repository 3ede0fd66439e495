"""Who may use each of this app's URLs; tests/test_urls.py checks every pattern against it."""

from tests.test_urls import ALL_OK

EXPECTED = {
    "tunnels:tunnel_list": ("get", {}, ALL_OK),
}
