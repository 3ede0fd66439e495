import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from dashboard.models import AuditEntry, User
from tests.browser.test_sign_in import sign_in_as
from tests.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def record_requests(page) -> list[tuple[str, str, str, str | None]]:
    """Every request the page makes from now on: (resource type, method, path, its HX-Request header).

    Without htmx the forms still work as full page loads, so only this tells an in-place swap from a navigation.
    """
    seen = []
    page.on(
        "request",
        lambda r: seen.append((r.resource_type, r.method, urlsplit(r.url).path, r.headers.get("hx-request"))),
    )
    return seen


def test_admin_changes_a_role_in_place_with_htmx_under_the_strict_csp(page, gatehouse):
    make_user(email="bob@example.com")
    sign_in_as(page, gatehouse, "ada")
    page.get_by_role("link", name="Settings").click()
    row = page.locator("tr", has_text="bob@example.com")
    row.get_by_label("Role of bob@example.com").select_option("operator")
    requests = record_requests(page)
    row.get_by_role("button", name="Save").click()
    expect(page.locator("#toasts")).to_contain_text("bob@example.com is now operator.")
    expect(page).to_have_url(f"{gatehouse}/settings/")
    # Swapped in place: the change went out as an htmx request and no page was loaded.
    posts = [r for r in requests if r[1] == "POST"]
    assert len(posts) == 1 and posts[0][0] == "xhr" and posts[0][3] == "true"
    assert not [r for r in requests if r[0] == "document"]
    assert User.objects.get(email="bob@example.com").role == User.Role.OPERATOR
    assert AuditEntry.objects.filter(action="user.role_changed", target_label="bob@example.com").exists()
    assert page.csp_violations == []


def test_audit_filters_swap_the_table_and_keep_the_url(page, gatehouse):
    sign_in_as(page, gatehouse, "ada")
    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Action").select_option("auth.signed_in")
    requests = record_requests(page)
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"/audit/\?.*action=auth.signed_in"))
    expect(page.locator("#audit-table tbody tr")).to_have_count(1)
    # The table was swapped by an htmx request, not by loading the page again.
    assert ("xhr", "GET", "/audit/", "true") in requests
    assert not [r for r in requests if r[0] == "document"]
    page.reload()
    expect(page.locator("#audit-table tbody tr")).to_have_count(1)
    assert page.csp_violations == []


def test_pages_work_on_a_phone(browser, gatehouse):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    sign_in_as(page, gatehouse, "ada")
    nav = page.get_by_role("navigation", name="Main")
    for name in ["Overview", "Tunnels", "Discovery", "Vendors", "Audit", "Settings"]:
        expect(nav.get_by_role("link", name=name)).to_be_attached()
    # Nothing on the page is wider than the screen except inside scrolling containers.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()
