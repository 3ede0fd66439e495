"""Onboarding and revocation, run eagerly against the simulator through the real SDK."""

from vendors.models import ServiceToken, Vendor, WorkflowRun


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
    ours = [p for p in _policies(cloudflare_sim) if p["name"] == vendor.policy_name]
    assert len(ours) == 1
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
    assert "cloudflared access tcp" not in mailoutbox[0].body or "--url localhost:" in mailoutbox[0].body


def test_revoke_removes_vendor_from_every_policy_and_verifies(
    make_vendor, cloudflare_sim, operator, django_capture_on_commit_callbacks
):
    from vendors import services

    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(tokens=2)
    with django_capture_on_commit_callbacks(execute=True):
        run = services.vendor_revoke(actor=operator, vendor=vendor, origin=None)
    run.refresh_from_db()
    vendor.refresh_from_db()
    assert run.status == WorkflowRun.Status.SUCCEEDED, (run.reason, list(run.steps.values("key", "status", "error")))
    assert vendor.status == Vendor.Status.REVOKED
    assert not [p for p in _policies(cloudflare_sim) if p["name"] == vendor.policy_name]
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
        policies = sorted(p["id"] for p in _policies(cloudflare_sim) if p["name"] == vendor.policy_name)
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
