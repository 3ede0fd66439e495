import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from dashboard import services
from dashboard.models import AuditEntry, User
from tests.factories import make_user

AUDIT = reverse("dashboard:audit_list")
EXPORT = reverse("dashboard:audit_export")


def _entries(n, **fields):
    for i in range(n):
        services.audit_record(
            action=fields.get("action", "auth.signed_in"),
            actor_email=fields.get("actor_email", f"user{i}@example.com"),
            target_label=fields.get("target_label", f"target-{i}"),
        )


def test_audit_page_shows_entries_newest_first(viewer_client):
    _entries(3)
    body = viewer_client.get(AUDIT).content.decode()
    assert body.index("user2@example.com") < body.index("user1@example.com") < body.index("user0@example.com")


def test_audit_page_paginates_by_cursor_until_the_end(viewer_client, settings):
    settings.GATEHOUSE_AUDIT_PAGE_SIZE = 2
    _entries(5)
    seen, url, pages = [], AUDIT, 0
    while url:
        response = viewer_client.get(url)
        pages += 1
        page = response.context["page"]
        seen += [e.actor_email for e in page.entries]
        url = f"{AUDIT}?before={page.next_cursor}" if page.next_cursor else None
    # The viewer's own sign-in is not an entry: force_login sends the signal, which records one.
    actors = [e for e in seen if e.startswith("user")]
    assert actors == [f"user{i}@example.com" for i in (4, 3, 2, 1, 0)]
    assert pages == -(-len(seen) // 2)


def test_audit_filters_by_actor_action_target_and_time(viewer_client):
    _entries(3)
    services.audit_record(action="user.role_changed", actor_email="boss@example.com", target_label="bob@example.com")
    assert [e.actor_email for e in viewer_client.get(AUDIT, {"actor": "Boss@Example.com"}).context["page"].entries] == [
        "boss@example.com"
    ]
    entries = viewer_client.get(AUDIT, {"action": "user.role_changed"}).context["page"].entries
    assert [e.action for e in entries] == ["user.role_changed"]
    entries = viewer_client.get(AUDIT, {"target": "target-1"}).context["page"].entries
    assert [e.target_label for e in entries] == ["target-1"]
    future = (timezone.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert viewer_client.get(AUDIT, {"since": future}).context["page"].entries == []


def test_audit_filter_errors_are_shown_not_raised(viewer_client):
    response = viewer_client.get(AUDIT, {"since": "2026-02-01T00:00", "until": "2026-01-01T00:00"})
    assert response.status_code == 200
    assert "must be earlier" in response.content.decode()
    response = viewer_client.get(AUDIT, {"since": "yesterday-ish", "action": "drop table", "before": "-3"})
    assert response.status_code == 200
    assert response.context["page"] is None


def test_audit_htmx_request_gets_only_the_table(viewer_client, htmx_headers):
    _entries(1)
    body = viewer_client.get(AUDIT, headers=htmx_headers).content.decode()
    assert body.lstrip().startswith('<div id="audit-table">')
    assert 'class="nav"' not in body and "user0@example.com" in body


def test_audit_text_from_outside_is_escaped(viewer_client):
    services.audit_record(
        action="auth.refused",
        actor_email="<script>alert(1)</script>@x.test",
        details={"reason": "<img src=x onerror=alert(1)>"},
    )
    body = viewer_client.get(AUDIT).content.decode()
    assert "<script>alert(1)" not in body and "&lt;script&gt;" in body
    assert "<img src=x" not in body


def test_admin_exports_the_filtered_log_as_csv_and_the_export_is_audited(admin_client, admin):
    _entries(3)
    services.audit_record(action="user.role_changed", actor_email="boss@example.com", target_label="=HYPERLINK(1)")
    response = admin_client.get(EXPORT, {"action": "user.role_changed"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["id", "at", "actor", "action"]
    assert [(r[2], r[3]) for r in rows[1:]] == [("boss@example.com", "user.role_changed")]
    assert rows[1][6] == "'=HYPERLINK(1)"
    exported = AuditEntry.objects.get(action="audit.exported")
    assert exported.actor_email == admin.email and exported.details == {"action": "user.role_changed"}


def test_viewers_and_operators_cannot_export(viewer_client, operator_client):
    assert viewer_client.get(EXPORT).status_code == 403
    assert operator_client.get(EXPORT).status_code == 403
    assert not AuditEntry.objects.filter(action="audit.exported").exists()


def test_admin_sees_people_and_changes_a_role(admin_client):
    bob = make_user(email="bob@example.com")
    page = admin_client.get(reverse("dashboard:settings")).content.decode()
    assert "bob@example.com" in page
    response = admin_client.post(
        reverse("dashboard:user_role_update", args=[bob.public_id]), {"role": "operator"}, follow=True
    )
    bob.refresh_from_db()
    assert bob.role == User.Role.OPERATOR
    assert "bob@example.com is now operator." in response.content.decode()


def test_role_change_over_htmx_returns_the_row_and_a_toast(admin_client, htmx_headers):
    bob = make_user(email="bob@example.com")
    url = reverse("dashboard:user_role_update", args=[bob.public_id])
    body = admin_client.post(url, {"role": "admin"}, headers=htmx_headers).content.decode()
    assert body.lstrip().startswith(f'<tr id="user-{bob.public_id}">')
    assert 'hx-swap-oob="beforeend"' in body and "is now admin" in body


def test_refused_role_change_explains_why(admin_client, admin):
    url = reverse("dashboard:user_role_update", args=[admin.public_id])
    response = admin_client.post(url, {"role": "viewer"}, follow=True)
    admin.refresh_from_db()
    assert admin.role == User.Role.ADMIN
    assert "at least one admin" in response.content.decode()
    response = admin_client.post(url, {"role": "emperor"}, follow=True)
    assert "Choose one of the roles." in response.content.decode()


def test_viewers_see_no_people_list(viewer_client):
    make_user(email="bob@example.com")
    assert "bob@example.com" not in viewer_client.get(reverse("dashboard:settings")).content.decode()


def test_pages_carry_a_strict_content_security_policy(viewer_client):
    response = viewer_client.get(reverse("dashboard:home"))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response["X-Frame-Options"] == "DENY"
    assert len(response["X-Request-ID"]) >= 8


@pytest.mark.django_db
def test_sign_in_and_role_change_are_the_first_entries(client, admin):
    bob = make_user(email="bob@example.com")
    client.force_login(admin)
    client.post(reverse("dashboard:user_role_update", args=[bob.public_id]), {"role": "operator"})
    client.post(reverse("account_logout"))
    entries = AuditEntry.objects.order_by("id").values_list("action", "actor_email")
    assert list(entries) == [
        ("auth.signed_in", admin.email),
        ("user.role_changed", admin.email),
        ("auth.signed_out", admin.email),
    ]
    change = AuditEntry.objects.get(action="user.role_changed")
    assert (change.target_label, change.details["to"]) == ("bob@example.com", "operator")


def test_pages_do_not_skip_or_repeat_entries_recorded_in_the_same_instant(viewer_client, settings):
    settings.GATEHOUSE_AUDIT_PAGE_SIZE = 3
    same_moment = timezone.now()
    for i in range(7):
        AuditEntry.objects.create(action="auth.signed_in", actor_email=f"tied{i}@example.com", at=same_moment)
    seen, url = [], AUDIT
    while url:
        page = viewer_client.get(url).context["page"]
        seen += [e.actor_email for e in page.entries if e.actor_email.startswith("tied")]
        url = f"{AUDIT}?before={page.next_cursor}" if page.next_cursor else None
    assert seen == [f"tied{i}@example.com" for i in reversed(range(7))]


def test_a_forged_page_link_is_refused_politely(viewer_client):
    response = viewer_client.get(AUDIT, {"before": "12345.x"})
    assert response.status_code == 200
    assert "page link is not valid" in response.content.decode()


@pytest.mark.parametrize("before", ["999999999999999999.1", "253402300800000000.1"])
def test_a_page_link_past_any_date_is_refused_politely(viewer_client, admin_client, before):
    response = viewer_client.get(AUDIT, {"before": before})
    assert response.status_code == 200, f"before={before} answered {response.status_code}"
    assert "page link is not valid" in response.content.decode()
    assert admin_client.get(EXPORT, {"before": before}).status_code < 500


def test_csv_export_neutralises_formulas_in_every_column(admin_client):
    services.audit_record(
        action="user.role_changed",
        actor_email="=cmd|'/c calc'!A1@example.com",
        target_type="user",
        target_id="+1+1",
        target_label=" =HYPERLINK(1)",
        details={"x": "-2+3"},
    )
    response = admin_client.get(EXPORT, {"action": "user.role_changed"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    row = rows[1]
    assert row[2] == "'=cmd|'/c calc'!A1@example.com"
    assert row[5] == "'+1+1"
    assert row[6] == "' =HYPERLINK(1)"
    assert row[7] == '{"x": "-2+3"}'
    assert all(cell.lstrip(" ")[:1] not in "=+-@\t\r" or cell.startswith("'") for cell in row if cell)


def test_a_clients_request_id_is_not_kept(viewer_client):
    response = viewer_client.get(reverse("dashboard:home"), headers={"X-Request-ID": "forged-request-0001"})
    assert response["X-Request-ID"] != "forged-request-0001"


def test_the_proxys_request_id_is_kept_when_settings_say_the_proxy_sets_it(viewer_client, settings):
    settings.GATEHOUSE_PROXY_SETS_REQUEST_ID = True
    response = viewer_client.get(reverse("dashboard:home"), headers={"X-Request-ID": "proxy-request-0001"})
    assert response["X-Request-ID"] == "proxy-request-0001"
    bad = viewer_client.get(reverse("dashboard:home"), headers={"X-Request-ID": "<script>"})
    assert bad["X-Request-ID"] != "<script>" and len(bad["X-Request-ID"]) == 32
