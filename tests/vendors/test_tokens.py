"""Rotating and refreshing a vendor's service token from its page: operations of the shared engine, against the
simulator."""

import logging
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from cloudflare_sim import faults, world
from dashboard import operations
from dashboard.models import AuditEntry
from vendors import services, tokens
from vendors.models import ServiceToken, TokenChange, TokenChangeStep, Vendor, WorkflowRun
from vendors.tasks import token_change_run

ROTATE = "POST /accounts/{account_id}/access/service_tokens/{token_id}/rotate"


def _onboarded(make_vendor, capture):
    with capture(execute=True):
        vendor = make_vendor(tokens=1)
    assert vendor.runs.get().status == WorkflowRun.Status.SUCCEEDED
    return vendor, vendor.service_tokens.get()


def _app(sim, name):
    return next(a for a in sim.store.list("access_app", sim.account_id) if a["name"] == name)


def _rotations(sim) -> int:
    return sim.stats()["endpoints"].get(ROTATE, {"calls": 0})["calls"]


def test_rotating_shows_the_new_secret_once_and_the_old_one_stops_working(
    make_vendor, cloudflare_sim, operator, operator_client, django_capture_on_commit_callbacks, caplog
):
    caplog.set_level(logging.DEBUG)
    vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    old = services.token_secret_reveal(actor=operator, token=token, request_origin=None)
    app = _app(cloudflare_sim, "PostgreSQL orders")
    assert world.token_admitted(cloudflare_sim.store, app, token.cf_id, client_secret=old)

    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(reverse("vendors:token_rotate", kwargs={"public_id": token.public_id}))
    change = TokenChange.objects.get()
    assert response["Location"] == reverse("vendors:token_change_detail", kwargs={"public_id": change.public_id})
    page = operator_client.get(response["Location"]).content.decode()
    assert "Show secret once" in page and "old one no longer works" in page
    assert "Rotate secret" in page and "Done" in page

    shown = operator_client.post(reverse("vendors:token_reveal", kwargs={"public_id": token.public_id}))
    token.refresh_from_db()
    new = shown.context["secret"]
    assert new != old and new.encode() in shown.content and shown["Cache-Control"] == "no-store"
    assert token.secret_sealed == ""
    assert world.token_admitted(cloudflare_sim.store, app, token.cf_id, client_secret=new)
    assert not world.token_admitted(cloudflare_sim.store, app, token.cf_id, client_secret=old)
    # Shown once: asking again is refused, and the change's page no longer offers it.
    again = operator_client.post(reverse("vendors:token_reveal", kwargs={"public_id": token.public_id}))
    assert again.status_code == 302
    assert "Show secret once" not in operator_client.get(response["Location"]).content.decode()
    rotated = AuditEntry.objects.get(action="vendor.token_rotated", target_id=str(vendor.public_id))
    assert rotated.actor_email == operator.email and rotated.details["token"] == token.label
    # The secret is nowhere but where it was shown: not in the audit, the change, its receipt or the log.
    kept = [
        str(list(AuditEntry.objects.values_list("details", flat=True))),
        str(list(TokenChange.objects.values_list("data", "reason"))),
        str(list(TokenChangeStep.objects.values_list("answers", "error"))),
        caplog.text,
    ]
    assert not [text for text in kept if new in text or old in text]


def test_a_rotation_runs_as_one_step_with_its_receipt_and_is_audited_once(
    make_vendor, cloudflare_sim, operator, django_capture_on_commit_callbacks
):
    _vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        change = tokens.token_rotate(actor=operator, token=token, request_origin=None)
    change.refresh_from_db()
    step = change.steps.get()
    assert (change.status, change.lease_until) == (TokenChange.Status.SUCCEEDED, None)
    assert (step.key, step.status, step.attempts) == ("rotate", TokenChangeStep.Status.DONE, 1)
    assert [a["call"] for a in step.answers] == ["access.service_tokens.rotate"]
    assert token.client_id in step.answers[0]["answer"]
    assert AuditEntry.objects.filter(action="vendor.token_rotated").count() == 1


def test_running_a_rotations_task_twice_rotates_once(
    make_vendor, cloudflare_sim, operator, django_capture_on_commit_callbacks
):
    _vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        change = tokens.token_rotate(actor=operator, token=token, request_origin=None)
    token.refresh_from_db()
    sealed, rotations = token.secret_sealed, _rotations(cloudflare_sim)
    assert rotations == 1

    token_change_run.delay(change.pk)

    token.refresh_from_db()
    assert (token.secret_sealed, _rotations(cloudflare_sim)) == (sealed, rotations)
    assert AuditEntry.objects.filter(action="vendor.token_rotated").count() == 1


def test_a_rotation_whose_worker_died_after_sealing_the_secret_is_not_rotated_again(
    make_vendor, cloudflare_sim, operator, django_capture_on_commit_callbacks
):
    _vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        change = tokens.token_rotate(actor=operator, token=token, request_origin=None)
    token.refresh_from_db()
    revealed = services.token_secret_reveal(actor=operator, token=token, request_origin=None)
    # As the database stood had the worker been killed after the secret was sealed, before the step was recorded.
    TokenChange.objects.filter(pk=change.pk).update(
        status=TokenChange.Status.RUNNING, finished_at=None, updated_at=timezone.now() - timedelta(minutes=5)
    )
    TokenChangeStep.objects.filter(run=change).update(status=TokenChangeStep.Status.RUNNING, finished_at=None)

    assert operations.operations_resume() == 1

    change.refresh_from_db()
    assert change.status == TokenChange.Status.SUCCEEDED
    assert _rotations(cloudflare_sim) == 1
    app = _app(cloudflare_sim, "PostgreSQL orders")
    assert world.token_admitted(cloudflare_sim.store, app, token.cf_id, client_secret=revealed)


def test_a_rotation_whose_task_was_lost_is_sent_to_a_worker_again_by_the_resume_pass(
    make_vendor, cloudflare_sim, operator, django_capture_on_commit_callbacks
):
    _vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    # The request's transaction never commits here, so its task is never sent: the message is lost.
    change = tokens.token_rotate(actor=operator, token=token, request_origin=None)
    assert operations.operations_resume() == 0
    TokenChange.objects.filter(pk=change.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    assert operations.operations_resume() == 1
    change.refresh_from_db()
    token.refresh_from_db()
    assert change.status == TokenChange.Status.SUCCEEDED and token.secret_sealed
    assert operations.operations_resume() == 0


def test_a_second_change_to_a_token_while_one_runs_is_refused_with_what_to_do(
    make_vendor, cloudflare_sim, operator, operator_client, django_capture_on_commit_callbacks
):
    _vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    first = tokens.token_rotate(actor=operator, token=token, request_origin=None)
    with pytest.raises(ValidationError, match="being changed"):
        tokens.token_refresh(actor=operator, token=token, request_origin=None)
    response = operator_client.post(
        reverse("vendors:token_rotate", kwargs={"public_id": token.public_id}), follow=True
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert f"{token.label} is being changed (rotate secret); wait for it to finish." in text
    # The vendor's page links the change under way.
    assert reverse("vendors:token_change_detail", kwargs={"public_id": first.public_id}) in text
    assert list(TokenChange.objects.values_list("pk", flat=True)) == [first.pk]


def test_a_rotation_cloudflare_keeps_failing_stops_visibly_and_is_retried_from_its_page(
    make_vendor, cloudflare_sim, operator, operator_client, viewer_client, django_capture_on_commit_callbacks
):
    _vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    sealed = token.secret_sealed
    faults.save(cloudflare_sim.store, {"rules": [{"endpoint": ROTATE, "error_rate": 1.0}]})
    with django_capture_on_commit_callbacks(execute=True):
        change = tokens.token_rotate(actor=operator, token=token, request_origin=None)
    change.refresh_from_db()
    assert change.status == TokenChange.Status.FAILED and change.reason.startswith("Cloudflare kept failing")
    token.refresh_from_db()
    assert token.secret_sealed == sealed
    assert AuditEntry.objects.filter(action="vendor.token_change_failed").count() == 1
    page_url = reverse("vendors:token_change_detail", kwargs={"public_id": change.public_id})
    retry_url = reverse("vendors:token_change_retry", kwargs={"public_id": change.public_id})
    assert retry_url in operator_client.get(page_url).content.decode()
    assert retry_url not in viewer_client.get(page_url).content.decode()
    assert viewer_client.post(retry_url).status_code == 403

    faults.save(cloudflare_sim.store, {"rules": []})
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(retry_url)
    assert response["Location"] == page_url
    change.refresh_from_db()
    token.refresh_from_db()
    assert change.status == TokenChange.Status.SUCCEEDED and token.secret_sealed != sealed
    assert AuditEntry.objects.get(action="vendor.token_change_retried").actor_email == operator.email
    assert AuditEntry.objects.filter(action="vendor.token_rotated").count() == 1


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

    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(reverse("vendors:token_refresh", kwargs={"public_id": token.public_id}))
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.expires_at - timezone.now() > timedelta(days=89)
    assert world.parse_time(cloudflare_sim.store.get("service_token", token.cf_id)["expires_at"]) == (
        token.expires_at.timestamp()
    )
    refreshed = AuditEntry.objects.get(action="vendor.token_refreshed", target_id=str(vendor.public_id))
    assert refreshed.details["from"].startswith(soon.date().isoformat())
    assert refreshed.details["to"] == token.expires_at.isoformat()
    page = operator_client.get(response["Location"]).content.decode()
    assert "Extend expiry" in page and "Done" in page


def test_a_token_deleted_at_cloudflare_is_explained_not_a_server_error(
    make_vendor, cloudflare_sim, operator_client, django_capture_on_commit_callbacks
):
    _vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    sealed = token.secret_sealed
    cloudflare_sim.store.delete("service_token", token.cf_id)
    for name in ("vendors:token_rotate", "vendors:token_refresh"):
        with django_capture_on_commit_callbacks(execute=True):
            response = operator_client.post(reverse(name, kwargs={"public_id": token.public_id}))
        page = operator_client.get(response["Location"])
        assert page.status_code == 200
        assert b"no longer at Cloudflare; re-apply the vendor to replace it" in page.content
    token.refresh_from_db()
    assert token.secret_sealed == sealed and token.status == ServiceToken.Status.ACTIVE
    assert not AuditEntry.objects.filter(action__in=["vendor.token_rotated", "vendor.token_refreshed"]).exists()
    assert AuditEntry.objects.filter(action="vendor.token_change_failed").count() == 2


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
    assert not TokenChange.objects.exists()


def test_viewers_may_not_rotate(make_vendor, cloudflare_sim, viewer_client, django_capture_on_commit_callbacks):
    _vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    calls = cloudflare_sim.calls()
    response = viewer_client.post(reverse("vendors:token_rotate", kwargs={"public_id": token.public_id}))
    assert response.status_code == 403 and cloudflare_sim.calls() == calls


def test_the_change_page_serves_its_fragment_to_htmx_and_polls_only_while_active(
    make_vendor, cloudflare_sim, operator, viewer_client, htmx_headers, django_capture_on_commit_callbacks
):
    _vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    change = tokens.token_rotate(actor=operator, token=token, request_origin=None)
    url = reverse("vendors:token_change_detail", kwargs={"public_id": change.public_id})
    fragment = viewer_client.get(url, headers=htmx_headers).content.decode()
    assert fragment.strip().startswith('<div id="token-change-status"') and "hx-trigger" in fragment
    assert "<html" not in fragment and "Show secret once" not in fragment
    token_change_run.delay(change.pk)
    assert "hx-trigger" not in viewer_client.get(url, headers=htmx_headers).content.decode()
    assert viewer_client.put(url).status_code == 405


def test_a_rotated_secret_of_an_old_token_is_kept_a_day_for_revealing_then_dropped(
    make_vendor, cloudflare_sim, operator, django_capture_on_commit_callbacks
):
    _vendor, token = _onboarded(make_vendor, django_capture_on_commit_callbacks)
    ServiceToken.objects.filter(pk=token.pk).update(created_at=timezone.now() - timedelta(days=200), secret_sealed="")
    with django_capture_on_commit_callbacks(execute=True):
        tokens.token_rotate(actor=operator, token=token, request_origin=None)
    services.tokens_forget_unshown_secrets()
    token.refresh_from_db()
    assert token.secret_sealed, "a token's age is not its secret's"
    ServiceToken.objects.filter(pk=token.pk).update(secret_sealed_at=timezone.now() - timedelta(days=2))
    assert services.tokens_forget_unshown_secrets() == 1
    token.refresh_from_db()
    assert token.secret_sealed == ""
