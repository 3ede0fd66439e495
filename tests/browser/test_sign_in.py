import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from dashboard.models import AuditEntry, User

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in_as(page, gatehouse, subject):
    page.goto(f"{gatehouse}/audit/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/audit/"))
    page.get_by_role("button", name="Sign in with Google").click()
    page.get_by_role("button", name=f"Authorize as {subject}").click()


def test_allowed_workspace_account_signs_in_and_out(page, gatehouse):
    sign_in_as(page, gatehouse, "ada")
    expect(page).to_have_url(f"{gatehouse}/audit/")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    expect(page.locator(".who .badge")).to_have_text("Admin")
    assert User.objects.get(email="ada@example.com").role == User.Role.ADMIN
    expect(page.get_by_text("auth.signed_in")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.goto(f"{gatehouse}/settings/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/settings/"))
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["user.created", "auth.signed_in", "auth.signed_out"]
    assert page.csp_violations == []


def test_second_person_of_the_domain_starts_as_viewer(page, gatehouse):
    sign_in_as(page, gatehouse, "vic")
    expect(page.locator(".who .badge")).to_have_text("Viewer")


@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        ("personal", "not managed by an allowed Google Workspace"),
        ("gmail", "gmail.com are not allowed"),
        ("unverified", "not verified"),
    ],
)
def test_anyone_else_is_refused_and_gets_no_account(page, gatehouse, subject, reason):
    sign_in_as(page, gatehouse, subject)
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_text(reason)).to_be_visible()
    assert not User.objects.exists()
    refused = AuditEntry.objects.get()
    assert refused.action == "auth.refused" and reason in refused.details["reason"]
    page.goto(f"{gatehouse}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))


def test_signed_out_visitor_is_sent_to_sign_in(page, gatehouse):
    for path in ["/", "/tunnels/", "/audit/?action=auth.signed_in"]:
        page.goto(f"{gatehouse}{path}")
        expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
        expect(page.get_by_role("button", name="Sign in with Google")).to_be_visible()


def test_google_is_sent_the_redirect_uri_the_readme_documents(page, gatehouse):
    with page.expect_request(re.compile(r"/oauth2/authorize\?")) as authorize:
        page.goto(f"{gatehouse}/accounts/login/")
        page.get_by_role("button", name="Sign in with Google").click()
    redirect_uri = parse_qs(urlsplit(authorize.value.url).query)["redirect_uri"]
    assert redirect_uri == [f"{gatehouse}/accounts/oidc/google/login/callback/"]
