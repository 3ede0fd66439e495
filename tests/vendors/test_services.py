from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from alerts.models import Alert
from dashboard.models import AuditEntry
from vendors import services
from vendors.models import Grant, Vendor, VendorSettings, WorkflowRun


def test_sponsor_hears_once_that_a_grant_ends_soon(make_vendor, mailoutbox):
    vendor = make_vendor(days=2)
    mailoutbox.clear()
    assert services.grants_notify_expiring() == 2
    assert services.grants_notify_expiring() == 0
    assert {tuple(m.to) for m in mailoutbox} == {(vendor.sponsor.email,)}
    assert "ends on" in mailoutbox[0].body


def test_expired_grants_are_removed_at_cloudflare(make_vendor, cloudflare_sim, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("Redis cache",))
    Grant.objects.filter(vendor=vendor).update(ends_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        services.grants_expire()
    run = vendor.runs.get(kind=WorkflowRun.Kind.EXPIRE)
    vendor.refresh_from_db()
    assert run.status == WorkflowRun.Status.SUCCEEDED, list(run.steps.values_list("key", "error"))
    redis_app = next(
        a for a in cloudflare_sim.store.list("access_app", cloudflare_sim.account_id) if a["name"] == "Redis cache"
    )
    assert vendor.grants.get().cf_policy_id not in [r["id"] for r in redis_app["_policy_refs"]]
    assert not vendor.grants.filter(status=Grant.Status.ACTIVE).exists()
    # Running the beat pass again changes nothing.
    with django_capture_on_commit_callbacks(execute=True):
        assert services.grants_expire() == []


def test_overdue_vendors_are_flagged_once_and_suspended_when_the_admin_says_so(
    make_vendor, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor()
    Vendor.objects.filter(pk=vendor.pk).update(review_due=timezone.localdate() - timedelta(days=1))
    mailoutbox.clear()
    assert services.vendors_recertify() == {"flagged": 1, "suspended": 0}
    assert services.vendors_recertify() == {"flagged": 0, "suspended": 0}
    assert len(mailoutbox) == 1
    VendorSettings.objects.update_or_create(pk=1, defaults={"auto_suspend_overdue": True})
    with django_capture_on_commit_callbacks(execute=True):
        assert services.vendors_recertify()["suspended"] == 1
    vendor.refresh_from_db()
    assert vendor.status == Vendor.Status.SUSPENDED
    assert AuditEntry.objects.filter(action="vendor.review_overdue", target_id=str(vendor.public_id)).count() == 1


def test_revoke_wins_over_a_running_onboarding(make_vendor, operator):
    vendor = make_vendor()  # onboarding waits for its commit
    onboarding = vendor.runs.get()
    revoke = services.vendor_revoke(actor=operator, vendor=vendor, request_origin=None)
    onboarding.refresh_from_db()
    assert onboarding.status == WorkflowRun.Status.CANCELLED
    assert revoke.status == WorkflowRun.Status.PENDING
    assert services.vendor_revoke(actor=operator, vendor=vendor, request_origin=None) == revoke


def test_only_one_run_at_a_time_per_vendor(make_vendor, operator):
    vendor = make_vendor()
    grant = vendor.grants.first()
    with pytest.raises(ValidationError, match="Another workflow"):
        services.grant_extend(actor=operator, grant=grant, days=7, request_origin=None)


def test_a_permanent_error_stops_the_run_with_its_reason_and_retry_resumes_it(
    make_vendor, operator, cloudflare_sim, django_capture_on_commit_callbacks
):
    vendor = make_vendor(apps=("Redis cache",))
    redis_app = vendor.grants.get().application
    # The application disappears at Cloudflare before onboarding runs.
    cloudflare_sim.store.delete("access_app", redis_app.cf_id)
    with django_capture_on_commit_callbacks(execute=True):
        from vendors.tasks import workflow_advance

        workflow_advance.delay(vendor.runs.get().pk)
    run = vendor.runs.get()
    vendor.refresh_from_db()
    assert run.status == WorkflowRun.Status.FAILED
    assert "No longer at Cloudflare: Redis cache" in run.reason
    assert vendor.status == Vendor.Status.NEEDS_ATTENTION
    assert Alert.objects.filter(target_id=str(vendor.public_id), kind="vendor.onboard_stopped").exists()
    services.run_retry(actor=operator, run=run, request_origin=None)
    run.refresh_from_db()
    assert run.status == WorkflowRun.Status.RUNNING
    assert run.steps.get(key="validate").status == "pending"


def test_transient_errors_are_retried_then_stop_the_run(
    make_vendor, cloudflare_sim, django_capture_on_commit_callbacks
):
    from cloudflare_sim import faults

    vendor = make_vendor()
    faults.save(cloudflare_sim.store, {"rules": [{"endpoint": "*", "error_rate": 1.0, "error_status": 503}]})
    with django_capture_on_commit_callbacks(execute=True):
        from vendors.tasks import workflow_advance

        workflow_advance.delay(vendor.runs.get().pk)
    run = vendor.runs.get()
    assert run.status == WorkflowRun.Status.FAILED
    assert run.reason.startswith("Cloudflare kept failing")
    assert run.steps.get(key="validate").attempts > 10
