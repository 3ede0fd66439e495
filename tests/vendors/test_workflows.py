"""Onboarding and revocation, run eagerly against the simulator through the real SDK."""

import random
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from cloudflare_sim import world
from integrations import cloudflare as cf
from vendors import services
from vendors.models import AccessApplication, Grant, ServiceToken, Vendor, WorkflowRun, WorkflowStep
from vendors.tasks import workflow_advance


def _policies(sim):
    return sim.store.list("access_policy", sim.account_id)


def test_onboarding_creates_one_policy_attaches_it_and_creates_tokens(
    make_vendor, cloudflare_sim, django_capture_on_commit_callbacks, mailoutbox
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(tokens=2)
    vendor.refresh_from_db()
    run = vendor.runs.get()
    assert run.status == WorkflowRun.Status.SUCCEEDED, (run.reason, list(run.steps.values("key", "status", "error")))
    assert vendor.status == Vendor.Status.ACTIVE
    ours = [p for p in _policies(cloudflare_sim) if vendor.owns_policy_name(p["name"]) and p["decision"] == "allow"]
    assert [p["name"] for p in ours] == [vendor.policy_name_for("8h")]
    assert ours[0]["include"] == [{"email": {"email": vendor.contacts[0]}}]
    apps = {a["name"]: a for a in cloudflare_sim.store.list("access_app", cloudflare_sim.account_id)}
    for name in ("PostgreSQL orders", "Internal API"):
        assert ours[0]["id"] in [r["id"] for r in apps[name]["_policy_refs"]]
    assert ours[0]["id"] not in [r["id"] for r in apps["Grafana"]["_policy_refs"]]
    tokens = [
        t
        for t in cloudflare_sim.store.list("service_token", cloudflare_sim.account_id)
        if t["name"].startswith(vendor.token_prefix)
    ]
    assert len(tokens) == 2
    assert vendor.service_tokens.filter(status=ServiceToken.Status.ACTIVE).exclude(secret_sealed="").count() == 2
    assert [m.to for m in mailoutbox] == [[vendor.contacts[0]]]


def test_onboarding_emails_each_contact_how_to_reach_each_granted_application(
    make_vendor, cloudflare_sim, django_capture_on_commit_callbacks, mailoutbox
):
    contacts = ["ana@northwind.example.net", "raj@northwind.example.net"]
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("PostgreSQL orders", "Internal API", "S3 web console"), contacts=contacts)
    assert sorted(m.to[0] for m in mailoutbox) == contacts
    body = mailoutbox[0].body
    assert mailoutbox[1].body == body
    grant = vendor.grants.get(application__name="S3 web console")
    # A private address by WARP, a public one in a browser, a private hostname through cloudflared's local port.
    assert f"S3 web console (until {grant.ends_at:%Y-%m-%d %H:%M} UTC)\n" in body
    assert "  Connect with the Cloudflare WARP client to 10.10.4.12:5432.\n" in body
    assert "  Open https://api.example.com in a browser.\n" in body
    assert "  cloudflared access tcp --hostname s3.internal.example.com --url localhost:443\n" in body
    assert "Grafana" not in body and "grafana.example.com" not in body


def test_revoke_removes_vendor_from_every_policy_and_verifies(
    make_vendor, cloudflare_sim, operator, django_capture_on_commit_callbacks
):
    from vendors import services

    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(tokens=2)
    with django_capture_on_commit_callbacks(execute=True):
        run = services.vendor_revoke(actor=operator, vendor=vendor, request_origin=None)
    run.refresh_from_db()
    vendor.refresh_from_db()
    assert run.status == WorkflowRun.Status.SUCCEEDED, (run.reason, list(run.steps.values("key", "status", "error")))
    assert vendor.status == Vendor.Status.REVOKED
    assert not [p for p in _policies(cloudflare_sim) if vendor.owns_policy_name(p["name"])]
    assert not [
        t
        for t in cloudflare_sim.store.list("service_token", cloudflare_sim.account_id)
        if t["name"].startswith(vendor.token_prefix)
    ]


def test_running_onboarding_again_leaves_cloudflare_as_after_once(
    make_vendor, cloudflare_sim, django_capture_on_commit_callbacks
):
    from vendors.models import WorkflowStep
    from vendors.tasks import workflow_advance

    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(tokens=2)

    def world():
        policies = sorted(p["id"] for p in _policies(cloudflare_sim) if vendor.owns_policy_name(p["name"]))
        refs = sorted(
            (a["id"], r["id"])
            for a in cloudflare_sim.store.list("access_app", cloudflare_sim.account_id)
            for r in a["_policy_refs"]
        )
        tokens = sorted(t["id"] for t in cloudflare_sim.store.list("service_token", cloudflare_sim.account_id))
        return policies, refs, tokens

    once = world()
    run = vendor.runs.get()
    run.steps.update(status=WorkflowStep.Status.PENDING)
    WorkflowRun.objects.filter(pk=run.pk).update(status=WorkflowRun.Status.RUNNING)
    with django_capture_on_commit_callbacks(execute=True):
        workflow_advance.delay(run.pk)
    run.refresh_from_db()
    assert run.status == WorkflowRun.Status.SUCCEEDED
    assert world() == once


# --- service tokens, app-scoped policies, people behind a domain ---------------------------------------------


def _apps(sim):
    return {a["name"]: a for a in sim.store.list("access_app", sim.account_id)}


def _receipt(run, key):
    return [(a["call"], a["target"], a["answer"]) for a in run.steps.get(key=key).answers]


def _succeeded(run):
    run.refresh_from_db()
    assert run.status == WorkflowRun.Status.SUCCEEDED, (run.reason, list(run.steps.values("key", "status", "error")))


def test_onboarding_admits_each_service_token_on_each_granted_application(
    make_vendor, cloudflare_sim, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(tokens=2)
    run = vendor.runs.get()
    _succeeded(run)
    vendor.refresh_from_db()
    service_ids = set(vendor.grants.values_list("cf_service_policy_id", flat=True))
    assert len(service_ids) == 1
    policy = cloudflare_sim.store.get("access_policy", service_ids.pop())
    assert policy["name"] == vendor.service_policy_name_for("8h") and policy["decision"] == "non_identity"
    tokens = list(vendor.service_tokens.all())
    assert policy["include"] == [{"service_token": {"token_id": t.cf_id}} for t in tokens]
    apps = _apps(cloudflare_sim)
    for token in tokens:
        assert world.token_admitted(cloudflare_sim.store, apps["PostgreSQL orders"], token.cf_id)
        assert world.token_admitted(cloudflare_sim.store, apps["Internal API"], token.cf_id)
        assert not world.token_admitted(cloudflare_sim.store, apps["Grafana"], token.cf_id)
        # The expiry comes from reading the token back: the create answer carries none.
        kept = cloudflare_sim.store.get("service_token", token.cf_id)
        assert token.expires_at is not None and token.expires_at.timestamp() == world.parse_time(kept["expires_at"])
    assert [c for c, _t, _a in _receipt(run, "tokens")].count("access.service_tokens.get") == 2
    assert _receipt(run, "verify_granted")[-1][2] == (
        "policy attached to 2 granted application(s), sessions 8h; 2 service token(s) admitted on each"
    )


def test_verification_finds_a_service_token_no_policy_admits(
    make_vendor, cloudflare_sim, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(tokens=2)
    vendor.refresh_from_db()
    first, second = vendor.service_tokens.all()
    policy = cloudflare_sim.store.get("access_policy", vendor.grants.first().cf_service_policy_id)
    policy["include"] = [{"service_token": {"token_id": first.cf_id}}]
    cloudflare_sim.store.put("access_policy", policy, cloudflare_sim.account_id)
    run = vendor.runs.get()
    run.steps.filter(key="verify_granted").update(status=WorkflowStep.Status.PENDING)
    WorkflowRun.objects.filter(pk=run.pk).update(status=WorkflowRun.Status.RUNNING)
    with django_capture_on_commit_callbacks(execute=True):
        workflow_advance.delay(run.pk)
    run.refresh_from_db()
    assert run.status == WorkflowRun.Status.NEEDS_ATTENTION
    assert f"PostgreSQL orders does not admit service token {second.label}." in run.reason
    assert "does not admit exactly its service tokens" in run.reason


def test_revoke_leaves_no_policy_admitting_the_vendors_tokens(
    make_vendor, cloudflare_sim, operator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(tokens=2)
    vendor.refresh_from_db()
    token_ids = list(vendor.service_tokens.values_list("cf_id", flat=True))
    with django_capture_on_commit_callbacks(execute=True):
        run = services.vendor_revoke(actor=operator, vendor=vendor, request_origin=None)
    _succeeded(run)
    store = cloudflare_sim.store
    policies = store.list("access_policy", cloudflare_sim.account_id)
    assert not [p for p in policies if vendor.owns_policy_name(p["name"])]
    assert not [
        p for p in policies if any(r.get("service_token", {}).get("token_id") in token_ids for r in p["include"])
    ]
    assert not [t for t in token_ids if store.get("service_token", t) is not None]
    for app in _apps(cloudflare_sim).values():
        assert not any(world.token_admitted(store, app, t) for t in token_ids)
    deleted = [t for c, t, _a in _receipt(run, "end_access") if c == "access.policies.delete"]
    assert len(deleted) == 2
    assert _receipt(run, "verify_revoked")[-1][2] == "no policy, reference, service token or session admits the vendor"


def _legacy_app(name="Legacy wiki"):
    """An application whose only policy is app-scoped, as applications made before reusable policies are."""
    return cf.client().zero_trust.access.applications.create(
        account_id=cf.account_id(),
        type="self_hosted",
        name=name,
        domain="wiki.example.com",
        policies=[{"name": "staff", "decision": "allow", "include": [{"email_domain": {"domain": "example.com"}}]}],
    )


def test_a_grant_of_an_application_with_app_scoped_policies_is_refused_before_cloudflare(
    make_vendor, access_apps, cloudflare_sim
):
    _legacy_app()
    services.access_apps_refresh()
    legacy = AccessApplication.objects.get(name="Legacy wiki")
    assert legacy.inline_policies == 1 and not legacy.grantable
    access_apps["Legacy wiki"] = legacy
    assert AccessApplication.objects.get(name="Grafana").inline_policies == 0
    before = cloudflare_sim.calls()
    with pytest.raises(ValidationError) as refused:
        make_vendor(apps=("Legacy wiki",))
    (message,) = refused.value.message_dict["applications"]
    assert message.startswith("Legacy wiki still has 1 application-scoped (legacy) policy")
    assert "convert them to reusable policies" in message
    assert cloudflare_sim.calls() == before


def test_onboarding_stops_without_writing_when_a_granted_application_gained_app_scoped_policies(
    make_vendor, cloudflare_sim, django_capture_on_commit_callbacks
):
    vendor = make_vendor(apps=("Redis cache", "Grafana"))
    redis = next(
        a for a in cloudflare_sim.store.list("access_app", cloudflare_sim.account_id) if a["name"] == "Redis cache"
    )
    legacy = cloudflare_sim.store.get("access_app", _legacy_app().id)
    redis["_policy_refs"], redis["_inline_policies"] = [], legacy["_inline_policies"]
    cloudflare_sim.store.put("access_app", redis, cloudflare_sim.account_id)
    with django_capture_on_commit_callbacks(execute=True):
        workflow_advance.delay(vendor.runs.get().pk)
    run = vendor.runs.get()
    assert run.status == WorkflowRun.Status.FAILED
    assert run.steps.get(key="validate").status == WorkflowStep.Status.FAILED
    assert run.reason.startswith("Redis cache still has application-scoped (legacy) policies")
    assert "convert them to reusable policies" in run.reason
    assert "PUT /accounts/{account_id}/access/apps/{app_id}" not in cloudflare_sim.stats()["endpoints"]
    assert AccessApplication.objects.get(name="Redis cache").inline_policies == 1


def _sign_in(sim, *emails):
    for email in emails:
        world.user_for_email(sim.store, sim.account_id, email, time.time())
    world.sync_sessions(sim.store, sim.account_id, time.time(), random.Random(5), login_chance=1.0)
    return {u["email"]: u["id"] for u in sim.store.list("access_user", sim.account_id) if u["email"] in emails}


def _sessions(sim, user_id):
    return sim.store.list("access_session", sim.account_id, parent=user_id)


def test_revoke_ends_the_sessions_of_people_admitted_by_the_vendors_domain(
    make_vendor, cloudflare_sim, operator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(contacts=["ghost@zeta-vendor.example"], domains=("zeta-vendor.example",), tokens=0)
    users = _sign_in(cloudflare_sim, "ana@zeta-vendor.example", "eve@zeta-vendor.example.org")
    assert _sessions(cloudflare_sim, users["ana@zeta-vendor.example"])
    with django_capture_on_commit_callbacks(execute=True):
        run = services.vendor_revoke(actor=operator, vendor=vendor, request_origin=None)
    _succeeded(run)
    assert not _sessions(cloudflare_sim, users["ana@zeta-vendor.example"])
    revoked = {t: a for c, t, a in _receipt(run, "end_access") if c == "access.organizations.revoke_user"}
    # The contact never signed in: Cloudflare has nothing to revoke, which is not a failure.
    assert revoked == {"ana@zeta-vendor.example": "sessions ended", "ghost@zeta-vendor.example": "nothing to revoke"}


def test_expiry_ends_the_sessions_of_people_admitted_by_the_vendors_domain(
    make_vendor, cloudflare_sim, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("Redis cache",), domains=("eta-vendor.example",), tokens=1)
    users = _sign_in(cloudflare_sim, "bo@eta-vendor.example")
    assert _sessions(cloudflare_sim, users["bo@eta-vendor.example"])
    Grant.objects.filter(vendor=vendor).update(ends_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        services.grants_expire()
    run = vendor.runs.get(kind=WorkflowRun.Kind.EXPIRE)
    _succeeded(run)
    assert not _sessions(cloudflare_sim, users["bo@eta-vendor.example"])
    receipt = _receipt(run, "end_grant_sessions")
    assert ("access.users.list", "@eta-vendor.example", "1 item(s)") in receipt
    assert ("access.organizations.revoke_user", "bo@eta-vendor.example", "sessions ended") in receipt
    redis = _apps(cloudflare_sim)["Redis cache"]
    grant = vendor.grants.get(application__name="Redis cache")
    assert {grant.cf_policy_id, grant.cf_service_policy_id}.isdisjoint(r["id"] for r in redis["_policy_refs"])


def test_a_change_that_adds_the_first_service_token_creates_and_attaches_the_service_auth_policy(
    make_vendor, cloudflare_sim, operator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("Redis cache",), tokens=0)
    assert vendor.grants.get().cf_service_policy_id == ""
    with django_capture_on_commit_callbacks(execute=True):
        run = services.vendor_update(
            actor=operator,
            vendor=vendor,
            contacts=vendor.contacts,
            domains=vendor.domains,
            review_due=vendor.review_due,
            applications=[],
            ends_at=timezone.now() + timedelta(days=30),
            session_duration="8h",
            service_tokens=1,
            token_duration="720h",
            request_origin=None,
        )
    _succeeded(run)
    vendor.refresh_from_db()
    token = vendor.service_tokens.get()
    assert world.token_admitted(cloudflare_sim.store, _apps(cloudflare_sim)["Redis cache"], token.cf_id)
    assert ("access.policies.create", vendor.service_policy_name_for("8h"), "ok") in _receipt(run, "policy")
    assert ("access.apps.update", "attach to Redis cache", "ok") in _receipt(run, "attach")


def test_workflows_read_every_page_when_cloudflare_pages_smaller_than_asked(
    make_vendor, cloudflare_sim, operator, django_capture_on_commit_callbacks
):
    from cloudflare_sim import faults

    # Grafana and the granted applications sit on later pages of two.
    faults.save(cloudflare_sim.store, {"max_per_page": {"GET /accounts/{account_id}/access/*": 2}})
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("Support desk", "Kibana"), tokens=1)
    _succeeded(vendor.runs.get())
    with django_capture_on_commit_callbacks(execute=True):
        run = services.vendor_revoke(actor=operator, vendor=vendor, request_origin=None)
    _succeeded(run)
    assert ("access.apps.list", "account", "12 item(s)") in _receipt(run, "cut_off")
    assert {t for c, t, _a in _receipt(run, "cut_off") if c == "access.apps.update"} == {
        "detach from Support desk",
        "detach from Kibana",
    }
    assert cloudflare_sim.stats()["endpoints"]["GET /accounts/{account_id}/access/apps"]["calls"] >= 6 * 4


def test_revoke_verification_names_another_policy_that_still_admits_the_vendor(
    make_vendor, cloudflare_sim, operator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("Redis cache",), domains=("theta-vendor.example",), tokens=0)
    grafana = _apps(cloudflare_sim)["Grafana"]
    employees = cloudflare_sim.store.get("access_policy", grafana["_policy_refs"][0]["id"])
    employees["include"].append({"email_domain": {"domain": "theta-vendor.example"}})
    cloudflare_sim.store.put("access_policy", employees, cloudflare_sim.account_id)
    with django_capture_on_commit_callbacks(execute=True):
        run = services.vendor_revoke(actor=operator, vendor=vendor, request_origin=None)
    run.refresh_from_db()
    assert run.status == WorkflowRun.Status.NEEDS_ATTENTION
    assert "Grafana: policy 'Employees' admits by email domain theta-vendor.example." in run.reason
