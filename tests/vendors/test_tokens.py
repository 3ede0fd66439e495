"""Rotating and refreshing a vendor's service token from its page, against the simulator."""

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from cloudflare_sim import world
from dashboard.models import AuditEntry
from vendors import services, tokens
from vendors.models import ServiceToken, Vendor, WorkflowRun


def _onboarded(make_vendor, capture):
    with capture(execute=True):
        vendor = make_vendor(tokens=1)
    assert vendor.runs.get().status == WorkflowRun.Status.SUCCEEDED
    return vendor, vendor.service_tokens.get()


def _app(sim, name):
    return next(a for a in sim.store.list("access_app", sim.account_id) if a["name"] == name)


def test_rotating_shows_the_new_secret_once_and_the_old_one_stops_working(
    make_vendor, cloudflare_sim, operator, operator_client, django_capture_on_commit_callbacks
):
    vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    old = services.token_secret_reveal(actor=operator, token=token, request_origin=None)
    app = _app(cloudflare_sim, "PostgreSQL orders")
    assert world.token_admitted(cloudflare_sim.store, app, token.cf_id, client_secret=old)

    response = operator_client.post(reverse("vendors:token_rotate", kwargs={"public_id": token.public_id}))
    assert response.status_code == 302
    page = operator_client.get(response["Location"])
    assert b"Show secret once" in page.content and b"old one no longer works" in page.content

    shown = operator_client.post(reverse("vendors:token_reveal", kwargs={"public_id": token.public_id}))
    token.refresh_from_db()
    new = shown.context["secret"]
    assert new != old and new.encode() in shown.content and shown["Cache-Control"] == "no-store"
    assert token.secret_sealed == ""
    assert world.token_admitted(cloudflare_sim.store, app, token.cf_id, client_secret=new)
    assert not world.token_admitted(cloudflare_sim.store, app, token.cf_id, client_secret=old)
    # Shown once: asking again is refused.
    again = operator_client.post(reverse("vendors:token_reveal", kwargs={"public_id": token.public_id}))
    assert again.status_code == 302
    rotated = AuditEntry.objects.get(action="vendor.token_rotated", target_id=str(vendor.public_id))
    assert rotated.actor_email == operator.email and rotated.details["token"] == token.label
    assert new not in str(rotated.details) and old not in str(AuditEntry.objects.values_list("details", flat=True))


def test_refresh_moves_the_expiry_to_its_duration_from_now(
    make_vendor, cloudflare_sim, operator_client, django_capture_on_commit_callbacks
):
    vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    # The token has aged: Cloudflare would let it lapse in a day.
    soon = timezone.now() + timedelta(days=1)
    kept = cloudflare_sim.store.get("service_token", token.cf_id)
    cloudflare_sim.store.put(
        "service_token", {**kept, "expires_at": world.iso(soon.timestamp())}, cloudflare_sim.account_id
    )
    ServiceToken.objects.filter(pk=token.pk).update(expires_at=soon)

    response = operator_client.post(reverse("vendors:token_refresh", kwargs={"public_id": token.public_id}))
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.expires_at - timezone.now() > timedelta(days=89)
    assert world.parse_time(cloudflare_sim.store.get("service_token", token.cf_id)["expires_at"]) == (
        token.expires_at.timestamp()
    )
    refreshed = AuditEntry.objects.get(action="vendor.token_refreshed", target_id=str(vendor.public_id))
    assert refreshed.details["from"].startswith(soon.date().isoformat())


def test_a_token_deleted_at_cloudflare_is_explained_not_a_server_error(
    make_vendor, cloudflare_sim, operator_client, django_capture_on_commit_callbacks
):
    _vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    sealed = token.secret_sealed
    cloudflare_sim.store.delete("service_token", token.cf_id)
    for name in ("vendors:token_rotate", "vendors:token_refresh"):
        response = operator_client.post(reverse(name, kwargs={"public_id": token.public_id}), follow=True)
        assert response.status_code == 200
        assert b"no longer at Cloudflare" in response.content
    token.refresh_from_db()
    assert token.secret_sealed == sealed and token.status == ServiceToken.Status.ACTIVE
    assert not AuditEntry.objects.filter(action__in=["vendor.token_rotated", "vendor.token_refreshed"]).exists()


def test_a_revoked_vendors_token_is_not_rotated(
    make_vendor, cloudflare_sim, operator, operator_client, django_capture_on_commit_callbacks
):
    vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        services.vendor_revoke(actor=operator, vendor=vendor, request_origin=None)
    assert Vendor.objects.get(pk=vendor.pk).status == Vendor.Status.REVOKED
    calls = cloudflare_sim.calls()
    response = operator_client.post(reverse("vendors:token_rotate", kwargs={"public_id": token.public_id}), follow=True)
    assert b"cannot be changed" in response.content
    assert cloudflare_sim.calls() == calls


def test_viewers_may_not_rotate(make_vendor, cloudflare_sim, viewer_client, django_capture_on_commit_callbacks):
    _vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    calls = cloudflare_sim.calls()
    response = viewer_client.post(reverse("vendors:token_rotate", kwargs={"public_id": token.public_id}))
    assert response.status_code == 403 and cloudflare_sim.calls() == calls


def test_a_rotated_secret_of_an_old_token_is_kept_a_day_for_revealing_then_dropped(
    make_vendor, cloudflare_sim, operator, django_capture_on_commit_callbacks
):
    _vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    ServiceToken.objects.filter(pk=token.pk).update(created_at=timezone.now() - timedelta(days=200), secret_sealed="")
    tokens.token_rotate(actor=operator, token=token, request_origin=None)
    services.tokens_forget_unshown_secrets()
    token.refresh_from_db()
    assert token.secret_sealed, "a token's age is not its secret's"
    ServiceToken.objects.filter(pk=token.pk).update(secret_sealed_at=timezone.now() - timedelta(days=2))
    assert services.tokens_forget_unshown_secrets() == 1
    token.refresh_from_db()
    assert token.secret_sealed == ""
