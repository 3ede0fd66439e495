"""Several vendors revoked in one action, on real Celery workers against the simulator, with faults injected."""

from django.urls import reverse

from cloudflare_sim import faults
from dashboard.models import AuditEntry
from integrations import cloudflare as cf
from integrations.budget import Priority
from tests.vendors.test_worker import _admitted_anywhere, _finished, _sign_in, _steps
from vendors.models import Vendor, WorkflowRun


def _onboarded(make_vendor, count, **kwargs):
    vendors = [make_vendor(**kwargs) for _ in range(count)]
    for vendor in vendors:
        run = _finished(vendor.runs.get())
        assert run.status == WorkflowRun.Status.SUCCEEDED, _steps(run)
    return vendors


def test_ticked_vendors_are_revoked_together_each_verified_through_latency_and_5xx(
    workers, make_vendor, cloudflare_sim, operator_client
):
    for _ in range(3):
        workers.start()
    vendors = _onboarded(make_vendor, 4, tokens=1)
    spared = vendors.pop()
    for vendor in vendors:
        _sign_in(cloudflare_sim, vendor)
    ids = [str(v.public_id) for v in vendors]

    confirm = operator_client.get(reverse("vendors:vendors_revoke_confirm"), {"vendors": ids})
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert all(v.name in page for v in vendors) and spared.name not in page
    assert "Revoke all 3" in page

    faults.save(
        cloudflare_sim.store,
        {"rules": [{"endpoint": "*", "latency_ms": 150, "error_rate": 0.2, "error_status": 503}]},
    )
    response = operator_client.post(reverse("vendors:vendors_revoke"), {"vendors": ids})
    assert response.status_code == 302 and response["Location"] == reverse("vendors:vendor_list")
    runs = [v.runs.get(kind=WorkflowRun.Kind.REVOKE) for v in vendors]
    # While they run, the list says how far each has got and asks to be polled (only while visible).
    listing = operator_client.get(reverse("vendors:vendor_list")).content.decode()
    if any(WorkflowRun.objects.filter(pk__in=[r.pk for r in runs], status__in=WorkflowRun.ACTIVE)):
        assert "data-poll-visible" in listing

    runs = [_finished(run, timeout=120) for run in runs]
    stats = cloudflare_sim.stats()
    faults.clear(cloudflare_sim.store)
    for vendor, run in zip(vendors, runs, strict=True):
        vendor.refresh_from_db()
        assert run.status == WorkflowRun.Status.SUCCEEDED, (run.reason, _steps(run))
        assert vendor.status == Vendor.Status.REVOKED
        assert _admitted_anywhere(cloudflare_sim, vendor) == []
        assert run.actor_email == response.wsgi_request.user.email
    assert stats["by_status"].get("503", 0) > 0
    spared.refresh_from_db()
    assert spared.status == Vendor.Status.ACTIVE
    entry = AuditEntry.objects.get(action="vendor.bulk_revoke_requested")
    assert sorted(v["id"] for v in entry.details["vendors"]) == sorted(ids)
    assert AuditEntry.objects.filter(action="vendor.revoke_requested").count() == 3
    # Finished: the list shows each revocation and stops polling.
    listing = operator_client.get(reverse("vendors:vendor_list")).content.decode()
    assert "data-poll-visible" not in listing
    assert listing.count(">Revoked<") == 3


def test_a_bulk_revoke_goes_ahead_when_background_sync_has_spent_its_share(
    workers, make_vendor, cloudflare_sim, operator, settings
):
    from vendors import services

    # A budget of 400 calls, half of it kept for clicks; the workers are given the same.
    for key, value in {"CLOUDFLARE_RATE_LIMIT": "1600", "GATEHOUSE_CLOUDFLARE_INTERACTIVE_RESERVE": "0.5"}.items():
        workers.env[key] = value
    settings.CLOUDFLARE_RATE_LIMIT = 1600
    settings.GATEHOUSE_CLOUDFLARE_INTERACTIVE_RESERVE = 0.5
    for _ in range(2):
        workers.start()
    vendors = _onboarded(make_vendor, 3, tokens=1)
    budget = cf.budget()
    # Background sync takes everything it may.
    while budget.take(Priority.BACKGROUND).granted:
        pass
    used = budget.used()

    runs = services.vendors_revoke(actor=operator, vendors=vendors, request_origin=None)
    runs = [_finished(run) for run in runs]
    for vendor, run in zip(vendors, runs, strict=True):
        assert run.status == WorkflowRun.Status.SUCCEEDED, (run.reason, _steps(run))
        assert _admitted_anywhere(cloudflare_sim, vendor) == []
    # The revocations spent the reserve, and background work is still held back.
    assert budget.used() > used
    assert not budget.take(Priority.BACKGROUND).granted


def test_a_bad_selection_is_a_message_on_the_list_and_revokes_nothing(
    operator_client, make_vendor, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        vendor = make_vendor(apps=("Kibana",), tokens=0)
    cases = [
        ({}, "Tick the vendors to revoke first."),
        ({"vendors": ["not-a-uuid"]}, "That is not a vendor."),
        ({"vendors": ["8f0c3f5e-3c1a-4a57-9b59-1d1d7c7f0a11"]}, "revoked already or no longer exists"),
    ]
    for data, message in cases:
        for method, name in (("get", "vendors:vendors_revoke_confirm"), ("post", "vendors:vendors_revoke")):
            response = getattr(operator_client, method)(reverse(name), data, follow=True)
            assert response.status_code == 200
            assert message in response.content.decode(), (method, data)
    vendor.refresh_from_db()
    assert vendor.status == Vendor.Status.ACTIVE
    assert not vendor.runs.filter(kind=WorkflowRun.Kind.REVOKE).exists()
