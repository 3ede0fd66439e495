"""Per-grant control: each grant's own session length at Cloudflare, its own end, a later start, read back."""

import random
import time
from datetime import date, timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from cloudflare_sim import world
from dashboard.models import AuditEntry
from dashboard.requestinfo import RequestOrigin
from vendors import services
from vendors.models import Grant, Vendor, WorkflowRun


def _apps(sim):
    return {a["name"]: a for a in sim.store.list("access_app", sim.account_id)}


def _ours_on(sim, vendor, app_name):
    """The vendor's policies attached to the application, as the simulator keeps them."""
    app = _apps(sim)[app_name]
    return [p for p in world.app_policies(sim.store, app) if vendor.owns_policy_name(p["name"])]


def _succeeded(run):
    run.refresh_from_db()
    assert run.status == WorkflowRun.Status.SUCCEEDED, (run.reason, list(run.steps.values_list("key", "error")))
    return run


def _receipt(run, key):
    return [(a["call"], a["target"], a["answer"]) for a in run.steps.get(key=key).answers]


@pytest.fixture
def two_lengths(make_vendor, operator, cloudflare_sim, django_capture_on_commit_callbacks):
    """A vendor with a token: PostgreSQL orders at 8h and Internal API changed to 1h30m (written as 90m)."""
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("PostgreSQL orders", "Internal API"), tokens=1, session="8h")
    _succeeded(vendor.runs.get())
    api = vendor.grants.get(application__name="Internal API")
    with django_capture_on_commit_callbacks(execute=True):
        run = services.grant_update(
            actor=operator, grant=api, session_duration="90m", ends_at=api.ends_at, request_origin=RequestOrigin()
        )
    _succeeded(run)
    return vendor, run


def test_each_grant_keeps_its_own_session_length_at_cloudflare(two_lengths, cloudflare_sim):
    vendor, run = two_lengths
    orders = _ours_on(cloudflare_sim, vendor, "PostgreSQL orders")
    api = _ours_on(cloudflare_sim, vendor, "Internal API")
    assert {(p["name"], p["decision"], p["session_duration"]) for p in orders} == {
        (vendor.policy_name_for("8h"), "allow", "8h"),
        (vendor.service_policy_name_for("8h"), "non_identity", "8h"),
    }
    assert {(p["name"], p["decision"], p["session_duration"]) for p in api} == {
        (vendor.policy_name_for("1h30m"), "allow", "1h30m"),
        (vendor.service_policy_name_for("1h30m"), "non_identity", "1h30m"),
    }
    # Both lengths admit the vendor's people and its token on their own application only.
    apps = _apps(cloudflare_sim)
    token = vendor.service_tokens.get()
    for name in ("PostgreSQL orders", "Internal API"):
        assert world.admits(cloudflare_sim.store, apps[name], vendor.contacts[0])
        assert world.token_admitted(cloudflare_sim.store, apps[name], token.cf_id)
    assert not world.admits(cloudflare_sim.store, apps["Grafana"], vendor.contacts[0])
    # Four policies for two lengths, no more: the 8h pair is shared by every 8h grant.
    owned = [p for p in cloudflare_sim.store.list("access_policy", cloudflare_sim.account_id)]
    assert len([p for p in owned if vendor.owns_policy_name(p["name"])]) == 4
    assert _receipt(run, "verify_granted")[-1][2] == (
        "policy attached to 2 granted application(s), sessions 1h30m, 8h; 1 service token(s) admitted on each"
    )
    grant = vendor.grants.get(application__name="Internal API")
    assert grant.session_duration == "1h30m"
    assert AuditEntry.objects.filter(action="vendor.grant_changed", target_id=str(vendor.public_id)).exists()


def test_a_session_length_no_grant_uses_any_more_leaves_no_policy_behind(
    two_lengths, operator, cloudflare_sim, django_capture_on_commit_callbacks
):
    vendor, _run = two_lengths
    api = vendor.grants.get(application__name="Internal API")
    with django_capture_on_commit_callbacks(execute=True):
        run = services.grant_update(
            actor=operator, grant=api, session_duration="8h", ends_at=api.ends_at, request_origin=RequestOrigin()
        )
    _succeeded(run)
    names = sorted(
        p["name"]
        for p in cloudflare_sim.store.list("access_policy", cloudflare_sim.account_id)
        if vendor.owns_policy_name(p["name"])
    )
    assert names == sorted([vendor.policy_name_for("8h"), vendor.service_policy_name_for("8h")])


def test_verification_notices_a_session_length_changed_at_cloudflare(
    two_lengths, cloudflare_sim, django_capture_on_commit_callbacks
):
    from vendors.models import WorkflowStep
    from vendors.tasks import workflow_advance

    vendor, run = two_lengths
    grant = vendor.grants.get(application__name="Internal API")
    policy = cloudflare_sim.store.get("access_policy", grant.cf_policy_id)
    policy["session_duration"] = "24h"
    cloudflare_sim.store.put("access_policy", policy, cloudflare_sim.account_id)
    run.steps.filter(key="verify_granted").update(status=WorkflowStep.Status.PENDING)
    WorkflowRun.objects.filter(pk=run.pk).update(status=WorkflowRun.Status.RUNNING)
    with django_capture_on_commit_callbacks(execute=True):
        workflow_advance.delay(run.pk)
    run.refresh_from_db()
    assert run.status == WorkflowRun.Status.NEEDS_ATTENTION
    assert "policy for Internal API keeps sessions for 24h, not 1h30m" in run.reason


def test_ending_one_grant_stops_that_application_only_and_reads_it_back(
    make_vendor, operator, cloudflare_sim, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("PostgreSQL orders", "Internal API", "Redis cache"), tokens=1)
    _succeeded(vendor.runs.get())
    apps = _apps(cloudflare_sim)
    rng = random.Random(3)
    user = world.user_for_email(cloudflare_sim.store, cloudflare_sim.account_id, vendor.contacts[0], time.time(), rng)
    world.open_session(cloudflare_sim.store, cloudflare_sim.account_id, user, apps["Redis cache"], time.time(), rng)
    redis = vendor.grants.get(application__name="Redis cache")
    with django_capture_on_commit_callbacks(execute=True):
        run = services.grant_end(actor=operator, grant=redis, request_origin=RequestOrigin(source_ip="192.0.2.9"))
    _succeeded(run)
    assert run.kind == WorkflowRun.Kind.END_GRANT
    apps = _apps(cloudflare_sim)
    token = vendor.service_tokens.get()
    assert not world.admits(cloudflare_sim.store, apps["Redis cache"], vendor.contacts[0])
    assert not world.token_admitted(cloudflare_sim.store, apps["Redis cache"], token.cf_id)
    for name in ("PostgreSQL orders", "Internal API"):
        assert world.admits(cloudflare_sim.store, apps[name], vendor.contacts[0])
        assert world.token_admitted(cloudflare_sim.store, apps[name], token.cf_id)
    assert not [
        s
        for s in cloudflare_sim.store.list("access_session", cloudflare_sim.account_id, parent=user["id"])
        if apps["Redis cache"]["id"] in s["apps"]
    ]
    redis.refresh_from_db()
    vendor.refresh_from_db()
    assert redis.status == Grant.Status.ENDED and redis.ended_at is not None
    assert vendor.status == Vendor.Status.ACTIVE
    assert ("access.apps.revoke_tokens", apps["Redis cache"]["id"], "ok") in _receipt(run, "end_grant_sessions")
    assert _receipt(run, "verify_grants_ended")[-1][2] == (
        "nothing admits the vendor on 1 ended application(s); 2 grant(s) still admit it"
    )
    entry = AuditEntry.objects.get(action="vendor.grant_ended", target_id=str(vendor.public_id))
    assert entry.details["application"] == "Redis cache"


def test_ending_a_grant_is_not_verified_while_another_policy_admits_the_vendor_there(
    make_vendor, operator, cloudflare_sim, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("PostgreSQL orders", "Redis cache"), tokens=0)
    _succeeded(vendor.runs.get())
    policy = {
        "id": world.new_uuid(),
        "name": "Hand-made exception",
        "decision": "allow",
        "include": [{"email": {"email": vendor.contacts[0]}}],
        "exclude": [],
        "require": [],
        "session_duration": "8h",
        "created_at": world.iso(time.time()),
        "updated_at": world.iso(time.time()),
    }
    cloudflare_sim.store.put("access_policy", policy, cloudflare_sim.account_id)
    redis_app = _apps(cloudflare_sim)["Redis cache"]
    redis_app["_policy_refs"].append({"id": policy["id"], "precedence": 50})
    cloudflare_sim.store.put("access_app", redis_app, cloudflare_sim.account_id)
    with django_capture_on_commit_callbacks(execute=True):
        run = services.grant_end(
            actor=operator, grant=vendor.grants.get(application__name="Redis cache"), request_origin=None
        )
    run.refresh_from_db()
    assert run.status == WorkflowRun.Status.NEEDS_ATTENTION
    assert "Redis cache: policy 'Hand-made exception' admits by email" in run.reason


def test_a_grant_that_starts_later_waits_for_beat_and_is_onboarded_then(
    operator, access_apps, cloudflare_sim, django_capture_on_commit_callbacks, mailoutbox
):
    starts = timezone.now() + timedelta(days=2)
    with django_capture_on_commit_callbacks(execute=True):
        vendor = services.vendor_create(
            actor=operator,
            name="Later Ltd",
            sponsor=operator,
            contacts=["ana@later.example.net"],
            domains=[],
            review_due=date.today() + timedelta(days=90),
            applications=[access_apps["Kibana"]],
            ends_at=starts + timedelta(days=10),
            session_duration="2h",
            service_tokens=0,
            token_duration="720h",
            request_origin=None,
            starts_at=starts,
        )
    assert not vendor.runs.exists()
    assert vendor.grants.get().status == Grant.Status.SCHEDULED
    assert vendor.status == Vendor.Status.ONBOARDING
    assert not _ours_on(cloudflare_sim, vendor, "Kibana")
    # Beat before the start changes nothing.
    with django_capture_on_commit_callbacks(execute=True):
        assert services.grants_start() == []
    with django_capture_on_commit_callbacks(execute=True):
        started = services.grants_start(now=starts + timedelta(minutes=1))
    run = _succeeded(WorkflowRun.objects.get(pk__in=started))
    assert run.kind == WorkflowRun.Kind.ONBOARD
    vendor.refresh_from_db()
    assert vendor.status == Vendor.Status.ACTIVE
    assert [p["session_duration"] for p in _ours_on(cloudflare_sim, vendor, "Kibana")] == ["2h"]
    assert [m.to for m in mailoutbox] == [["ana@later.example.net"]]
    assert AuditEntry.objects.filter(action="vendor.grants_started", target_id=str(vendor.public_id)).exists()


def test_beat_ends_each_expired_grant_on_its_own(make_vendor, cloudflare_sim, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("PostgreSQL orders", "Kibana"), tokens=0)
    _succeeded(vendor.runs.get())
    Grant.objects.filter(vendor=vendor, application__name="Kibana").update(
        ends_at=timezone.now() - timedelta(seconds=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.grants_expire()
    run = _succeeded(vendor.runs.get(kind=WorkflowRun.Kind.EXPIRE))
    assert run.data["ended_apps"] == [_apps(cloudflare_sim)["Kibana"]["id"]]
    assert not _ours_on(cloudflare_sim, vendor, "Kibana")
    assert _ours_on(cloudflare_sim, vendor, "PostgreSQL orders")
    assert vendor.grants.get(application__name="PostgreSQL orders").status == Grant.Status.ACTIVE


def test_grant_changes_are_refused_clearly(make_vendor, operator, viewer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("Kibana",), tokens=0)
    grant = vendor.grants.get()
    with pytest.raises(PermissionDenied):
        services.grant_end(actor=viewer, grant=grant, request_origin=None)
    with pytest.raises(ValidationError, match="15m to 730h"):
        services.grant_update(
            actor=operator, grant=grant, session_duration="800h", ends_at=grant.ends_at, request_origin=None
        )
    with pytest.raises(ValidationError, match="past"):
        services.grant_update(
            actor=operator,
            grant=grant,
            session_duration="8h",
            ends_at=timezone.now() - timedelta(days=1),
            request_origin=None,
        )
    with django_capture_on_commit_callbacks(execute=True):
        services.grant_end(actor=operator, grant=grant, request_origin=None)
    with pytest.raises(ValidationError, match="ended already"):
        services.grant_end(actor=operator, grant=grant, request_origin=None)


def test_a_grant_is_ended_from_its_vendor_page_without_javascript(
    operator_client, viewer_client, make_vendor, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("PostgreSQL orders", "Kibana"), tokens=0)
    grant = vendor.grants.get(application__name="Kibana")
    page = operator_client.get(reverse("vendors:vendor_detail", kwargs={"public_id": vendor.public_id}))
    assert reverse("vendors:grant_end_confirm", kwargs={"public_id": grant.public_id}) in page.content.decode()
    confirm = operator_client.get(reverse("vendors:grant_end_confirm", kwargs={"public_id": grant.public_id}))
    assert confirm.status_code == 200 and b"End this grant" in confirm.content
    assert viewer_client.post(reverse("vendors:grant_end", kwargs={"public_id": grant.public_id})).status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(reverse("vendors:grant_end", kwargs={"public_id": grant.public_id}))
    run = vendor.runs.get(kind=WorkflowRun.Kind.END_GRANT)
    assert response.status_code == 302 and response["Location"] == reverse(
        "vendors:run_detail", kwargs={"public_id": run.public_id}
    )
    _succeeded(run)


def test_a_grants_session_is_changed_from_its_vendor_page_and_bad_input_is_a_message(
    operator_client, make_vendor, cloudflare_sim, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("Kibana",), tokens=0)
    grant = vendor.grants.get()
    url = reverse("vendors:grant_update", kwargs={"public_id": grant.public_id})
    bad = operator_client.post(url, {"session_duration": "forever", "ends_on": grant.ends_at.date().isoformat()})
    assert bad.status_code == 302
    page = operator_client.get(bad["Location"])
    assert "Write a session length like 8h" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(url, {"session_duration": "4h", "ends_on": grant.ends_at.date().isoformat()})
    assert response.status_code == 302
    _succeeded(vendor.runs.get(kind=WorkflowRun.Kind.CHANGE))
    assert [p["session_duration"] for p in _ours_on(cloudflare_sim, vendor, "Kibana")] == ["4h"]


def test_session_length_end_and_scheduled_start_on_a_real_worker(workers, make_vendor, operator, cloudflare_sim):
    from tests.vendors.test_worker import _finished, _steps

    workers.start()
    vendor = make_vendor(apps=("PostgreSQL orders", "Internal API", "Kibana"), tokens=1)
    assert _finished(vendor.runs.get()).status == WorkflowRun.Status.SUCCEEDED
    api = vendor.grants.get(application__name="Internal API")
    change = _finished(
        services.grant_update(
            actor=operator, grant=api, session_duration="2h", ends_at=api.ends_at, request_origin=None
        )
    )
    assert change.status == WorkflowRun.Status.SUCCEEDED, _steps(change)
    ended = _finished(
        services.grant_end(actor=operator, grant=vendor.grants.get(application__name="Kibana"), request_origin=None)
    )
    assert ended.status == WorkflowRun.Status.SUCCEEDED, _steps(ended)
    assert [p["session_duration"] for p in _ours_on(cloudflare_sim, vendor, "Internal API")] == ["2h", "2h"]
    assert [p["session_duration"] for p in _ours_on(cloudflare_sim, vendor, "PostgreSQL orders")] == ["8h", "8h"]
    assert _ours_on(cloudflare_sim, vendor, "Kibana") == []

    later = services.vendor_create(
        actor=operator,
        name="Starts Later Ltd",
        sponsor=operator,
        contacts=["ana@starts-later.example.net"],
        domains=[],
        review_due=date.today() + timedelta(days=90),
        applications=[vendor.grants.get(application__name="Kibana").application],
        ends_at=timezone.now() + timedelta(days=20),
        session_duration="30m",
        service_tokens=0,
        token_duration="720h",
        request_origin=None,
        starts_at=timezone.now() + timedelta(days=1),
    )
    (run_id,) = services.grants_start(now=timezone.now() + timedelta(days=1, minutes=1))
    onboarding = _finished(WorkflowRun.objects.get(pk=run_id))
    assert onboarding.status == WorkflowRun.Status.SUCCEEDED, _steps(onboarding)
    assert [p["session_duration"] for p in _ours_on(cloudflare_sim, later, "Kibana")] == ["30m"]


def test_revoking_a_vendor_takes_its_grants_that_have_not_started_too(
    make_vendor, operator, access_apps, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("Kibana",), tokens=0)
    with django_capture_on_commit_callbacks(execute=True):
        services.vendor_update(
            actor=operator,
            vendor=vendor,
            contacts=vendor.contacts,
            domains=[],
            review_due=vendor.review_due,
            applications=[access_apps["Grafana"]],
            ends_at=timezone.now() + timedelta(days=40),
            session_duration="8h",
            service_tokens=0,
            token_duration="720h",
            request_origin=None,
            starts_at=timezone.now() + timedelta(days=5),
        )
    assert vendor.grants.get(application__name="Grafana").status == Grant.Status.SCHEDULED
    with django_capture_on_commit_callbacks(execute=True):
        run = services.vendor_revoke(actor=operator, vendor=vendor, request_origin=None)
    _succeeded(run)
    assert set(vendor.grants.values_list("status", flat=True)) == {Grant.Status.REVOKED}
    with django_capture_on_commit_callbacks(execute=True):
        assert services.grants_start(now=timezone.now() + timedelta(days=6)) == []
