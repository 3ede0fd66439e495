"""Drift: what was changed at Cloudflare outside Gatehouse is found, shown, alerted and re-applied."""

from datetime import date, timedelta

from django.urls import reverse

from alerts.models import Alert
from cloudflare_sim import world
from dashboard.models import AuditEntry
from integrations import cloudflare as cf
from integrations.cloudflare import Priority
from tests.vendors.test_worker import _finished, _steps, workers  # noqa: F401 (the fixture)
from vendors import drift, services, tasks
from vendors.models import ServiceToken, Vendor, WorkflowRun


def _onboarded(make_vendor, capture, **kwargs):
    with capture(execute=True):
        vendor = make_vendor(**kwargs)
    assert vendor.runs.get().status == WorkflowRun.Status.SUCCEEDED
    vendor.refresh_from_db()
    return vendor


def _check(capture) -> None:
    # Alerts are raised once the check's transaction commits.
    with capture(execute=True):
        drift.drift_check()


def _alert(vendor):
    return Alert.objects.filter(dedupe_key=f"vendor-drift:{vendor.public_id}").first()


def _reapplied(client, vendor, capture) -> WorkflowRun:
    with capture(execute=True):
        response = client.post(reverse("vendors:drift_reapply", kwargs={"public_id": vendor.public_id}))
    assert response.status_code == 302
    run = vendor.runs.filter(kind=WorkflowRun.Kind.CHANGE).get()
    assert run.status == WorkflowRun.Status.SUCCEEDED, (run.reason, list(run.steps.values("key", "status", "error")))
    return run


def test_a_rule_added_at_cloudflare_is_found_alerted_shown_and_reapplied(
    make_vendor, cloudflare_sim, operator_client, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    vendor = _onboarded(make_vendor, capture, tokens=0)
    _check(capture)
    vendor.refresh_from_db()
    assert vendor.drift == [] and vendor.drift_checked_at is not None and _alert(vendor) is None

    # Someone adds a person to the vendor's policy at Cloudflare, through the API.
    policy_id = vendor.grants.get(application__name="Internal API").cf_policy_id
    sdk = cf.client()
    current = sdk.zero_trust.access.policies.get(policy_id, account_id=cloudflare_sim.account_id)
    sdk.zero_trust.access.policies.update(
        policy_id,
        account_id=cloudflare_sim.account_id,
        name=current.name,
        decision="allow",
        include=[{"email": {"email": vendor.contacts[0]}}, {"email": {"email": "intruder@elsewhere.example"}}],
        session_duration=current.session_duration,
    )
    _check(capture)
    vendor.refresh_from_db()
    (difference,) = vendor.drift
    assert "added email intruder@elsewhere.example" in difference["subject"]
    assert difference["expected"] == f"email {vendor.contacts[0]}"
    assert "intruder@elsewhere.example" in difference["found"]
    alert = _alert(vendor)
    assert alert.state == Alert.State.OPEN and "intruder@elsewhere.example" in alert.body
    page = operator_client.get(reverse("vendors:vendor_detail", kwargs={"public_id": vendor.public_id}))
    assert b"Changed at Cloudflare outside Gatehouse" in page.content and b"Re-apply" in page.content
    assert b"changed at Cloudflare</span>" in operator_client.get(reverse("vendors:vendor_list")).content

    _reapplied(operator_client, vendor, capture)
    assert cloudflare_sim.store.get("access_policy", policy_id)["include"] == [{"email": {"email": vendor.contacts[0]}}]
    page = operator_client.get(reverse("vendors:vendor_detail", kwargs={"public_id": vendor.public_id}))
    assert b"workflow has run since; check again" in page.content
    _check(capture)
    vendor.refresh_from_db()
    assert vendor.drift == [] and vendor.drift_found_at is None
    page = operator_client.get(reverse("vendors:vendor_detail", kwargs={"public_id": vendor.public_id}))
    assert b"Changed at Cloudflare outside Gatehouse" not in page.content
    assert _alert(vendor).state == Alert.State.RESOLVED
    actions = list(
        AuditEntry.objects.filter(target_id=str(vendor.public_id), action__startswith="vendor.drift").values_list(
            "action", flat=True
        )
    )
    assert sorted(actions) == ["vendor.drift_cleared", "vendor.drift_found", "vendor.drift_reapplied"]


def test_a_detached_policy_and_a_deleted_token_are_found_and_put_back(
    make_vendor, cloudflare_sim, operator_client, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    vendor = _onboarded(make_vendor, capture, tokens=1)
    token = vendor.service_tokens.get()
    grant = vendor.grants.get(application__name="Internal API")
    ours = {grant.cf_policy_id, grant.cf_service_policy_id}
    app = cf.access_app_get(grant.application.cf_id)
    reusable = {p.id for p in cf.access_policies_all()}
    cf.access_app_set_policies(app, [r for r in app.references(reusable) if r["id"] not in ours])
    cf.client().zero_trust.access.service_tokens.delete(token.cf_id, account_id=cloudflare_sim.account_id)

    _check(capture)
    vendor.refresh_from_db()
    found = {(d["subject"], d["found"]) for d in vendor.drift}
    assert ("Application Internal API", f"{grant.policy_name} detached") in found
    assert ("Application Internal API", f"{grant.service_policy_name} detached") in found
    assert (f"Service token {token.label}", "deleted at Cloudflare") in found
    assert not any("PostgreSQL" in subject for subject, _found in found)

    _reapplied(operator_client, vendor, capture)
    token.refresh_from_db()
    assert token.status == ServiceToken.Status.DELETED
    replacement = vendor.service_tokens.get(status=ServiceToken.Status.ACTIVE)
    assert replacement.label == token.label and replacement.secret_sealed
    internal_api = cloudflare_sim.store.get("access_app", grant.application.cf_id)
    assert world.token_admitted(cloudflare_sim.store, internal_api, replacement.cf_id)
    _check(capture)
    vendor.refresh_from_db()
    assert vendor.drift == []


def test_differences_from_cloudflare_are_escaped_on_the_page(
    make_vendor, cloudflare_sim, operator_client, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    vendor = _onboarded(make_vendor, capture, tokens=0)
    policy_id = vendor.grants.first().cf_policy_id
    policy = cloudflare_sim.store.get("access_policy", policy_id)
    cloudflare_sim.store.put(
        "access_policy", {**policy, "name": "<img src=x onerror=alert(1)>"}, cloudflare_sim.account_id
    )
    _check(capture)
    page = operator_client.get(reverse("vendors:vendor_detail", kwargs={"public_id": vendor.public_id}))
    assert b"&lt;img src=x onerror=alert(1)&gt;" in page.content
    assert b"<img src=x" not in page.content


def test_beat_reads_a_twelfth_of_the_active_vendors_a_pass_with_three_list_calls(cloudflare_sim, operator):
    Vendor.objects.bulk_create(
        Vendor(
            name=f"Spread {i}",
            sponsor=operator,
            contacts=[f"p{i}@spread.example"],
            review_due=date.today() + timedelta(days=30),
            status=Vendor.Status.ACTIVE,
        )
        for i in range(200)
    )
    Vendor.objects.create(
        name="Gone", sponsor=operator, contacts=["g@gone.example"], review_due=date.today(), status="revoked"
    )
    calls = cloudflare_sim.calls()
    assert drift.drift_check() == 17
    assert cloudflare_sim.calls() - calls == 3
    for _ in range(11):
        drift.drift_check()
    # Twelve passes (an hour at one every five minutes) have read every active vendor once.
    assert not Vendor.objects.filter(status=Vendor.Status.ACTIVE, drift_checked_at=None).exists()
    assert Vendor.objects.get(name="Gone").drift_checked_at is None
    assert cloudflare_sim.calls() - calls == 36


def test_a_vendor_with_a_workflow_running_is_left_alone(
    make_vendor, cloudflare_sim, operator, django_capture_on_commit_callbacks
):
    vendor = _onboarded(make_vendor, django_capture_on_commit_callbacks, tokens=0)
    # A change is queued but no worker has taken it yet.
    services.run_start(vendor=vendor, kind=WorkflowRun.Kind.CHANGE, actor=operator, request_origin=None)
    calls = cloudflare_sim.calls()
    assert drift.drift_check() == 0
    assert cloudflare_sim.calls() == calls


def test_check_now_reads_one_vendor_and_says_what_it_found(
    make_vendor, cloudflare_sim, operator, operator_client, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    vendor = _onboarded(make_vendor, capture, tokens=0)
    url = reverse("vendors:drift_check", kwargs={"public_id": vendor.public_id})
    response = operator_client.post(url, follow=True)
    assert b"as Gatehouse applied it" in response.content
    grant = vendor.grants.get(application__name="PostgreSQL orders")
    app = cf.access_app_get(grant.application.cf_id)
    reusable = {p.id for p in cf.access_policies_all()}
    cf.access_app_set_policies(app, [r for r in app.references(reusable) if r["id"] != grant.cf_policy_id])
    with capture(execute=True):
        response = operator_client.post(url, follow=True)
    assert b"differs from what Gatehouse applied" in response.content
    assert f"{grant.policy_name} detached".encode() in response.content
    entry = AuditEntry.objects.get(action="vendor.drift_found", target_id=str(vendor.public_id))
    assert entry.actor_email == operator.email


def test_drift_is_reapplied_on_a_real_worker(workers, make_vendor, cloudflare_sim, operator):  # noqa: F811
    workers.start()
    vendor = make_vendor(tokens=0)
    assert _finished(vendor.runs.get()).status == WorkflowRun.Status.SUCCEEDED
    vendor.refresh_from_db()
    policy_id = vendor.grants.first().cf_policy_id
    current = cf.access_policy_get(policy_id)
    cf.access_policy_update(
        policy_id,
        name=current.name,
        decision="allow",
        include=[{"email_domain": {"domain": "everyone-at-elsewhere.example"}}],
        session_duration=current.session_duration,
    )
    drift.drift_check()
    vendor.refresh_from_db()
    assert "removed email " + vendor.contacts[0] in vendor.drift[0]["subject"]
    run = _finished(drift.drift_reapply(actor=operator, vendor=vendor, request_origin=None))
    assert run.status == WorkflowRun.Status.SUCCEEDED, _steps(run)
    drift.drift_check()
    vendor.refresh_from_db()
    assert vendor.drift == []
    assert cloudflare_sim.store.get("access_policy", policy_id)["include"] == vendor.include_rules()


def test_the_beat_pass_gives_way_to_clicks_when_the_budget_is_spent(
    make_vendor, cloudflare_sim, operator_client, django_capture_on_commit_callbacks
):
    vendor = _onboarded(make_vendor, django_capture_on_commit_callbacks, tokens=0)
    budget = cf.budget()
    while budget.take(Priority.BACKGROUND).granted:
        pass
    calls = cloudflare_sim.calls()
    tasks.vendors_drift_check()
    vendor.refresh_from_db()
    assert vendor.drift_checked_at is None and cloudflare_sim.calls() == calls
    # The reserve kept for people's clicks still reads it at once.
    operator_client.post(reverse("vendors:drift_check", kwargs={"public_id": vendor.public_id}))
    vendor.refresh_from_db()
    assert vendor.drift_checked_at is not None and cloudflare_sim.calls() == calls + 3


def test_an_exclude_rule_added_at_cloudflare_is_found_and_reapplying_removes_it(
    make_vendor, cloudflare_sim, operator_client, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    vendor = _onboarded(make_vendor, capture, tokens=0)
    policy_id = vendor.grants.first().cf_policy_id
    current = cf.client().zero_trust.access.policies.get(policy_id, account_id=cloudflare_sim.account_id)
    cf.client().zero_trust.access.policies.update(
        policy_id,
        account_id=cloudflare_sim.account_id,
        name=current.name,
        decision="allow",
        include=[{"email": {"email": vendor.contacts[0]}}],
        exclude=[{"email": {"email": vendor.contacts[0]}}],
        session_duration=current.session_duration,
    )
    _check(capture)
    vendor.refresh_from_db()
    assert [(d["expected"], d["found"]) for d in vendor.drift] == [("none", f"email {vendor.contacts[0]}")]
    _reapplied(operator_client, vendor, capture)
    assert cloudflare_sim.store.get("access_policy", policy_id)["exclude"] == []
    _check(capture)
    vendor.refresh_from_db()
    assert vendor.drift == []
