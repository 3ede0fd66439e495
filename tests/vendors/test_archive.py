"""Archiving a revoked vendor: off the main list, history and receipts kept, nothing more done to it."""

from django.urls import reverse

from dashboard.models import AuditEntry
from vendors import services
from vendors.models import Vendor, WorkflowRun


def _revoked(make_vendor, operator, capture):
    with capture(execute=True):
        vendor = make_vendor(tokens=1)
    with capture(execute=True):
        services.vendor_revoke(actor=operator, vendor=vendor, request_origin=None)
    vendor.refresh_from_db()
    assert vendor.status == Vendor.Status.REVOKED
    return vendor


def test_an_archived_vendor_leaves_the_list_and_keeps_its_history(
    make_vendor, operator, operator_client, django_capture_on_commit_callbacks
):
    vendor = _revoked(make_vendor, operator, django_capture_on_commit_callbacks)
    kept = make_vendor(name="Still Here Ltd")
    assert vendor.name.encode() in operator_client.get(reverse("vendors:vendor_list")).content

    response = operator_client.post(reverse("vendors:vendor_archive", kwargs={"public_id": vendor.public_id}))
    assert response.status_code == 302
    vendor.refresh_from_db()
    assert vendor.archived_at is not None

    def link(v):
        return reverse("vendors:vendor_detail", kwargs={"public_id": v.public_id}).encode()

    listed = operator_client.get(reverse("vendors:vendor_list")).content
    assert link(vendor) not in listed and link(kept) in listed
    archived = operator_client.get(reverse("vendors:vendor_list") + "?archived=1").content
    assert link(vendor) in archived and link(kept) not in archived

    page = operator_client.get(reverse("vendors:vendor_detail", kwargs={"public_id": vendor.public_id}))
    assert b"Archived on" in page.content
    # Read-only: no action is offered any more.
    for action in ("vendor_archive", "vendor_revoke", "vendor_edit"):
        assert reverse(f"vendors:{action}", kwargs={"public_id": vendor.public_id}).encode() not in page.content
    # Receipts stay readable.
    for run in vendor.runs.all():
        receipt = operator_client.get(reverse("vendors:run_detail", kwargs={"public_id": run.public_id}))
        assert receipt.status_code == 200
    assert vendor.runs.filter(kind=WorkflowRun.Kind.REVOKE, status=WorkflowRun.Status.SUCCEEDED).exists()
    entry = AuditEntry.objects.get(action="vendor.archived", target_id=str(vendor.public_id))
    assert entry.actor_email == operator.email


def test_only_a_revoked_vendor_is_archived(make_vendor, operator_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor()
    response = operator_client.post(
        reverse("vendors:vendor_archive", kwargs={"public_id": vendor.public_id}), follow=True
    )
    assert b"only a revoked vendor can be archived" in response.content
    vendor.refresh_from_db()
    assert vendor.archived_at is None
    assert not AuditEntry.objects.filter(action="vendor.archived").exists()


def test_an_archived_vendor_is_not_revoked_or_retried_again(
    make_vendor, operator, operator_client, cloudflare_sim, django_capture_on_commit_callbacks
):
    vendor = _revoked(make_vendor, operator, django_capture_on_commit_callbacks)
    operator_client.post(reverse("vendors:vendor_archive", kwargs={"public_id": vendor.public_id}))
    runs, calls = vendor.runs.count(), cloudflare_sim.calls()
    response = operator_client.post(
        reverse("vendors:vendor_revoke", kwargs={"public_id": vendor.public_id}), follow=True
    )
    assert response.status_code == 200 and b"is archived" in response.content
    stopped = vendor.runs.first()
    WorkflowRun.objects.filter(pk=stopped.pk).update(status=WorkflowRun.Status.FAILED)
    response = operator_client.post(reverse("vendors:run_retry", kwargs={"public_id": stopped.public_id}), follow=True)
    assert b"is archived" in response.content
    vendor.refresh_from_db()
    assert vendor.status == Vendor.Status.REVOKED and vendor.runs.count() == runs
    assert cloudflare_sim.calls() == calls


def test_viewers_may_not_archive(make_vendor, operator, viewer_client, django_capture_on_commit_callbacks):
    vendor = _revoked(make_vendor, operator, django_capture_on_commit_callbacks)
    response = viewer_client.post(reverse("vendors:vendor_archive", kwargs={"public_id": vendor.public_id}))
    assert response.status_code == 403
    vendor.refresh_from_db()
    assert vendor.archived_at is None
