"""Where a request came from: X-Forwarded-For is believed only from the configured proxies."""

import pytest
from django.test import RequestFactory
from django.urls import reverse

from dashboard.models import AuditEntry, User
from dashboard.requestinfo import client_ip
from tests.factories import make_user


@pytest.fixture
def behind_one_proxy(settings):
    settings.GATEHOUSE_TRUSTED_PROXY_COUNT = 1
    settings.GATEHOUSE_TRUSTED_PROXIES = ["127.0.0.0/8", "::1/128", "172.18.0.1/32"]


def _ip(remote: str, forwarded: str | None = None) -> str | None:
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_ip(RequestFactory().get("/", **meta))


def test_a_client_outside_the_proxies_is_known_by_its_own_address(behind_one_proxy):
    assert _ip("203.0.113.9", "127.0.0.1") == "203.0.113.9"


def test_the_proxy_reports_the_address_it_appended(behind_one_proxy):
    assert _ip("172.18.0.1", "198.51.100.1, 203.0.113.9") == "203.0.113.9"
    assert _ip("::1", "2001:db8::7") == "2001:db8::7"


def test_a_request_from_the_proxy_address_without_the_header_is_that_address(behind_one_proxy):
    assert _ip("127.0.0.1") == "127.0.0.1"


def test_a_chain_shorter_than_the_proxies_names_no_one(settings):
    settings.GATEHOUSE_TRUSTED_PROXY_COUNT = 2
    settings.GATEHOUSE_TRUSTED_PROXIES = ["127.0.0.0/8"]
    assert _ip("127.0.0.1", "127.0.0.2") is None
    assert _ip("127.0.0.1", "203.0.113.9, 10.9.9.9") == "203.0.113.9"


def test_garbage_in_the_header_names_no_one(behind_one_proxy):
    assert _ip("127.0.0.1", "<script>") is None


def test_without_proxies_the_header_is_ignored(settings):
    settings.GATEHOUSE_TRUSTED_PROXY_COUNT = 0
    assert _ip("203.0.113.9", "127.0.0.1") == "203.0.113.9"


def test_the_audit_log_records_the_clients_address_not_one_it_forged(admin_client, behind_one_proxy):
    bob = make_user(email="bob@example.com")
    admin_client.post(
        reverse("dashboard:user_role_update", args=[bob.public_id]),
        {"role": User.Role.OPERATOR},
        REMOTE_ADDR="203.0.113.9",
        HTTP_X_FORWARDED_FOR="10.1.2.3",
    )
    entry = AuditEntry.objects.get(action="user.role_changed")
    assert entry.source_ip == "203.0.113.9", f"the audit entry names {entry.source_ip}"
