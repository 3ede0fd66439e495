from datetime import date, timedelta

from django.urls import reverse
from django.utils.html import escape

from dashboard.models import AuditEntry
from vendors.models import Vendor, WorkflowRun


def _form(access_apps, operator, **overrides):
    data = {
        "name": "Umbrella Consulting",
        "sponsor": operator.pk,
        "contacts": "ada@umbrella.example.net\nbob@umbrella.example.net",
        "domains": "",
        "review_due": (date.today() + timedelta(days=60)).isoformat(),
        "applications": [access_apps["Redis cache"].pk],
        "ends_on": (date.today() + timedelta(days=14)).isoformat(),
        "session_duration": "8h",
        "service_tokens": "1",
        "token_duration": "2160h",
    }
    data.update(overrides)
    return data


def test_adding_a_vendor_onboards_it_and_shows_the_progress(
    operator_client, operator, access_apps, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(reverse("vendors:vendor_create"), _form(access_apps, operator))
    vendor = Vendor.objects.get(name="Umbrella Consulting")
    run = vendor.runs.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("vendors:run_detail", kwargs={"public_id": run.public_id})
    page = operator_client.get(response["Location"])
    assert page.status_code == 200
    assert b"Create service tokens" in page.content
    assert run.steps.filter(status="done").count() == run.steps.count()


def test_invalid_input_is_explained_next_to_each_field(operator_client, operator, access_apps):
    data = _form(
        access_apps,
        operator,
        contacts="not-an-email",
        domains="gmail.com",
        ends_on=(date.today() - timedelta(days=1)).isoformat(),
        session_duration="900h",
    )
    response = operator_client.post(reverse("vendors:vendor_create"), data)
    assert response.status_code == 400
    text = response.content.decode()
    assert "Not an email address: not-an-email" in text
    assert "gmail.com is a consumer email provider" in text
    assert "today or in the past" in text
    assert "15m to 730h" in text
    assert not Vendor.objects.exists()


def test_consumer_domain_is_accepted_once_confirmed(operator_client, operator, access_apps):
    data = _form(access_apps, operator, domains="gmail.com", confirm_consumer_domains="on")
    response = operator_client.post(reverse("vendors:vendor_create"), data)
    assert response.status_code == 302
    assert Vendor.objects.get().domains == ["gmail.com"]


def test_progress_partial_polls_while_running_and_stops_when_done(
    viewer_client, make_vendor, htmx_headers, django_capture_on_commit_callbacks
):
    vendor = make_vendor()  # on-commit callbacks not run: the run waits
    run = vendor.runs.get()
    url = reverse("vendors:run_detail", kwargs={"public_id": run.public_id})
    waiting = viewer_client.get(url, headers=htmx_headers)
    assert b"<html" not in waiting.content
    assert b'hx-trigger="every 2s"' in waiting.content
    assert b"data-poll-visible" in waiting.content
    from vendors.tasks import workflow_advance

    with django_capture_on_commit_callbacks(execute=True):
        workflow_advance.delay(run.pk)
    finished = viewer_client.get(url, headers=htmx_headers)
    assert b"hx-trigger" not in finished.content


def test_revoke_from_the_list_runs_and_the_receipt_lists_every_step(
    operator_client, make_vendor, htmx_headers, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor()
    listing = operator_client.get(reverse("vendors:vendor_list"))
    revoke_url = reverse("vendors:vendor_revoke", kwargs={"public_id": vendor.public_id})
    confirm_url = reverse("vendors:vendor_revoke_confirm", kwargs={"public_id": vendor.public_id})
    assert f'href="{confirm_url}"'.encode() in listing.content
    assert f'hx-post="{revoke_url}"'.encode() in listing.content
    assert b"hx-confirm" in listing.content
    # Without JavaScript the link leads to a confirmation page whose form posts the revocation.
    assert revoke_url.encode() in operator_client.get(confirm_url).content
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(revoke_url, headers=htmx_headers)
    run = vendor.runs.get(kind=WorkflowRun.Kind.REVOKE)
    receipt_url = reverse("vendors:run_detail", kwargs={"public_id": run.public_id})
    assert response["HX-Redirect"] == receipt_url
    receipt = operator_client.get(receipt_url).content.decode()
    assert "Revocation receipt" in receipt
    for step in run.steps.all():
        assert escape(step.label) in receipt
    assert "access.policies.delete" in receipt
    assert "access.organizations.revoke_user" in receipt
    assert AuditEntry.objects.filter(action="vendor.workflow_succeeded", target_id=str(vendor.public_id)).exists()


def test_a_service_token_secret_is_shown_once(operator_client, make_vendor, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(tokens=1)
    token = vendor.service_tokens.get()
    url = reverse("vendors:token_reveal", kwargs={"public_id": token.public_id})
    first = operator_client.post(url)
    assert first.status_code == 200
    assert first["Cache-Control"] == "no-store"
    second = operator_client.post(url)
    assert second.status_code == 302
    token.refresh_from_db()
    assert token.secret_sealed == ""
    entry = AuditEntry.objects.get(action="vendor.token_secret_shown")
    secret = first.content.decode().split("CF-Access-Client-Secret</dt><dd><code>")[1].split("<")[0]
    assert len(secret) >= 32
    assert secret not in str(entry.details)


def test_viewers_cannot_revoke(viewer_client, make_vendor):
    vendor = make_vendor()
    response = viewer_client.post(reverse("vendors:vendor_revoke", kwargs={"public_id": vendor.public_id}))
    assert response.status_code == 403
    assert not vendor.runs.filter(kind=WorkflowRun.Kind.REVOKE).exists()


def test_changing_a_vendor_applies_contacts_and_new_grants_at_cloudflare(
    operator_client, make_vendor, access_apps, cloudflare_sim, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("Redis cache",))
    form = operator_client.get(reverse("vendors:vendor_edit", kwargs={"public_id": vendor.public_id}))
    assert vendor.contacts[0].encode() in form.content
    data = {
        "contacts": f"{vendor.contacts[0]}\nnew.person@vendor.example.net",
        "domains": "",
        "review_due": (date.today() + timedelta(days=120)).isoformat(),
        "applications": [access_apps["Kibana"].pk],
        "ends_on": (date.today() + timedelta(days=10)).isoformat(),
        "session_duration": "4h",
        "service_tokens": "0",
        "token_duration": "720h",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(reverse("vendors:vendor_update", kwargs={"public_id": vendor.public_id}), data)
    assert response.status_code == 302
    run = vendor.runs.get(kind=WorkflowRun.Kind.CHANGE)
    assert run.status == WorkflowRun.Status.SUCCEEDED, list(run.steps.values_list("key", "error"))
    kibana_grant = vendor.grants.get(application__name="Kibana", status="active")
    policy = cloudflare_sim.store.get("access_policy", kibana_grant.cf_policy_id, cloudflare_sim.account_id)
    assert {"email": {"email": "new.person@vendor.example.net"}} in policy["include"]
    assert policy["session_duration"] == "4h"
    kibana = next(
        a for a in cloudflare_sim.store.list("access_app", cloudflare_sim.account_id) if a["name"] == "Kibana"
    )
    assert kibana_grant.cf_policy_id in [r["id"] for r in kibana["_policy_refs"]]


def test_vendor_page_shows_grants_tokens_and_runs_but_no_actions_to_viewers(
    viewer_client, make_vendor, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("Redis cache",), tokens=1)
    page = viewer_client.get(reverse("vendors:vendor_detail", kwargs={"public_id": vendor.public_id}))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Redis cache" in text
    token = vendor.service_tokens.get()
    assert token.client_id in text
    # The expiry read back from Cloudflare after the token was created.
    assert f"until {token.expires_at:%Y-%m-%d}" in text
    assert f"<code>{vendor.service_policy_name_for('8h')}</code>" in text
    assert "Onboard" in text
    assert "Show secret once" not in text
    assert "Revoke all access" not in text


def test_extending_a_grant_pushes_its_end_and_applies_it(
    operator_client, make_vendor, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("Redis cache",), days=5)
    grant = vendor.grants.get()
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(
            reverse("vendors:grant_extend", kwargs={"public_id": grant.public_id}), {"days": "30"}
        )
    assert response.status_code == 302
    before = grant.ends_at
    grant.refresh_from_db()
    assert grant.ends_at - before == timedelta(days=30)
    run = vendor.runs.get(kind=WorkflowRun.Kind.CHANGE)
    assert run.status == WorkflowRun.Status.SUCCEEDED
    assert AuditEntry.objects.filter(action="vendor.grant_extended", target_id=str(vendor.public_id)).exists()


def test_admins_switch_automatic_suspension_of_overdue_vendors(admin_client, operator_client):
    from vendors.models import VendorSettings

    assert operator_client.post(reverse("vendors:settings_update"), {"auto_suspend_overdue": "on"}).status_code == 403
    assert not VendorSettings.load().auto_suspend_overdue
    response = admin_client.post(reverse("vendors:settings_update"), {"auto_suspend_overdue": "on"})
    assert response.status_code == 302
    assert VendorSettings.load().auto_suspend_overdue
    assert AuditEntry.objects.filter(action="vendor.settings_changed").count() == 1


def test_the_application_list_shows_which_applications_cannot_be_granted_and_why(
    viewer_client, operator_client, operator, access_apps
):
    from integrations import cloudflare as cf
    from vendors import services
    from vendors.models import AccessApplication

    cf.client().zero_trust.access.applications.create(
        account_id=cf.account_id(),
        type="self_hosted",
        name="Legacy wiki",
        domain="wiki.example.com",
        policies=[{"name": "staff", "decision": "allow", "include": [{"email_domain": {"domain": "example.com"}}]}],
    )
    services.access_apps_refresh()
    page = viewer_client.get(reverse("vendors:application_list"))
    assert page.status_code == 200
    text = page.content.decode()
    assert text.count("App-scoped policies") == 2  # the legacy wiki and the seeded SSH bastions
    assert escape("Legacy wiki still has 1 application-scoped (legacy) policy") in text
    assert escape("Zero Trust → Access → Applications → Legacy wiki → Policies") in text
    assert b'badge-green">Yes' in page.content
    legacy = AccessApplication.objects.get(name="Legacy wiki")
    form = operator_client.get(reverse("vendors:vendor_new")).content.decode()
    assert "Legacy wiki (cannot be granted yet: convert its app-scoped policies at Cloudflare)" in form
    refused = operator_client.post(
        reverse("vendors:vendor_create"), _form(access_apps, operator, applications=[legacy.pk])
    )
    assert refused.status_code == 400
    assert escape("Legacy wiki still has 1 application-scoped (legacy) policy") in refused.content.decode()
    assert not Vendor.objects.exists()


def test_extending_a_grant_while_the_vendors_workflow_runs_is_refused_with_what_to_do(
    operator_client, make_vendor, django_capture_on_commit_callbacks
):
    # Onboarding is recorded, its task not run yet: the vendor's one run is under way.
    vendor = make_vendor(apps=("Redis cache",), days=5)
    grant = vendor.grants.get()
    response = operator_client.post(
        reverse("vendors:grant_extend", kwargs={"public_id": grant.public_id}), {"days": "30"}, follow=True
    )
    assert response.status_code == 200
    assert "Another workflow is running for this vendor; wait for it to finish." in response.content.decode()
    assert list(vendor.runs.values_list("kind", flat=True)) == [WorkflowRun.Kind.ONBOARD]
    assert vendor.grants.get().ends_at == grant.ends_at
