import pytest

from dashboard.adapters import refusal_reason

ALLOWED = {"email": "ada@example.com", "email_verified": True, "hd": "example.com"}


@pytest.fixture(autouse=True)
def allowed_domains(settings):
    settings.GATEHOUSE_ALLOWED_DOMAINS = ["example.com", "example.org"]


def test_verified_workspace_account_of_an_allowed_domain_is_admitted():
    assert refusal_reason(ALLOWED) is None
    assert refusal_reason({**ALLOWED, "email": "Ada@Example.COM", "hd": "EXAMPLE.com"}) is None


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({**ALLOWED, "email_verified": False}, "not verified"),
        ({**ALLOWED, "email_verified": "true"}, "not verified"),
        ({k: v for k, v in ALLOWED.items() if k != "hd"}, "not managed by an allowed Google Workspace"),
        ({**ALLOWED, "hd": "elsewhere.com"}, "not managed by an allowed Google Workspace"),
        ({**ALLOWED, "email": "ada@gmail.com", "hd": "example.com"}, "gmail.com are not allowed"),
        ({**ALLOWED, "email": "ada@example.org"}, "does not belong to the account's Workspace"),
        ({**ALLOWED, "email": None}, "no email address"),
        ({"email_verified": True, "hd": "example.com"}, "no email address"),
        ({**ALLOWED, "email": "ada@example.com.evil.test", "hd": "example.com"}, "are not allowed"),
        ({**ALLOWED, "email": "ada@@example.com"}, "malformed"),
        ({**ALLOWED, "email": "a b@example.com"}, "malformed"),
        ({**ALLOWED, "email": "ada.@example.com"}, "malformed"),
        ({**ALLOWED, "email": "@example.com"}, "malformed"),
        ({**ALLOWED, "email": "x" * 250 + "@example.com"}, "malformed"),
    ],
)
def test_anyone_else_is_refused_with_a_reason(claims, reason):
    assert reason in refusal_reason(claims)
