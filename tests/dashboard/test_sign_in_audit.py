"""Refused sign-ins through the real OpenID flow (a local provider, Django's test client): what the audit log says."""

import copy
from urllib.parse import urlsplit

import httpx
import pytest
from oidc_provider_mock import User as Identity
from oidc_provider_mock import run_server_in_thread

from dashboard.models import AuditEntry, User
from tests.factories import make_user

IDENTITIES = [
    Identity(sub="vic", claims={"email": "vic@example.com", "email_verified": True, "hd": "example.com"}),
    Identity(sub="vic-again", claims={"email": "Vic@example.com", "email_verified": True, "hd": "example.com"}),
    Identity(sub="gmail", claims={"email": "=HYPERLINK(1)@gmail.com", "email_verified": True}),
]
MALFORMED = ["ada@@example.com", "a b@example.com", "ada.@example.com", "@example.com", "<ada>@example.com"]
IDENTITIES += [
    Identity(sub=f"malformed-{i}", claims={"email": email, "email_verified": True, "hd": "example.com"})
    for i, email in enumerate(MALFORMED)
]


@pytest.fixture(scope="module")
def oidc_provider():
    with run_server_in_thread(port=0, user_claims=IDENTITIES) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def sign_in(client, settings, oidc_provider):
    providers = copy.deepcopy(settings.SOCIALACCOUNT_PROVIDERS)
    providers["openid_connect"]["APPS"][0]["settings"]["server_url"] = oidc_provider
    settings.SOCIALACCOUNT_PROVIDERS = providers
    settings.GATEHOUSE_ALLOWED_DOMAINS = ["example.com"]

    def sign_in(subject: str):
        start = client.post("/accounts/oidc/google/login/")
        assert start.status_code == 302, start
        authorized = httpx.post(start["Location"], data={"sub": subject}, follow_redirects=False)
        callback = urlsplit(authorized.headers["Location"])
        return client.get(f"{callback.path}?{callback.query}")

    return sign_in


def test_refused_sign_in_records_the_address_as_claimed_not_as_actor(db, sign_in):
    response = sign_in("gmail")
    assert response.status_code == 403
    entry = AuditEntry.objects.get(action="auth.refused")
    assert entry.actor_email == "" and entry.actor_display == "not signed in"
    assert entry.details["claimed_email"] == "=HYPERLINK(1)@gmail.com"
    assert not User.objects.exists()


def test_sign_in_with_an_address_another_account_has_is_refused_and_audited(db, sign_in):
    assert sign_in("vic").status_code == 302
    assert sign_in("vic-again").status_code == 403
    refused = AuditEntry.objects.get(action="auth.refused")
    assert refused.details["claimed_email"] == "Vic@example.com"
    assert "belongs to another Gatehouse account" in refused.details["reason"]
    assert refused.actor_email == ""
    assert User.objects.count() == 1


def test_an_account_made_before_its_first_sign_in_is_not_taken_over(db, sign_in):
    make_user(email="vic@example.com")
    assert sign_in("vic").status_code == 403
    assert AuditEntry.objects.filter(action="auth.refused", details__claimed_email="vic@example.com").exists()


@pytest.mark.parametrize("index", range(len(MALFORMED)))
def test_a_verified_but_malformed_address_is_refused_and_audited_like_any_refusal(db, sign_in, index):
    response = sign_in(f"malformed-{index}")
    assert response.status_code == 403, f"{MALFORMED[index]} led to {response.status_code} {response.get('Location')}"
    assert "Not allowed" in response.content.decode()
    refused = AuditEntry.objects.get(action="auth.refused")
    assert refused.details["claimed_email"] == MALFORMED[index] and "malformed" in refused.details["reason"]
    assert not User.objects.exists()
