"""Tunnel changes as operations of the shared engine: one step the page shows, a lease, waits that release it,
and the audit actions tunnel changes have always written."""

from datetime import timedelta

from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone

from dashboard.models import AuditEntry
from tunnels import services
from tunnels.models import Tunnel, TunnelChange, TunnelChangeStep
from tunnels.tasks import tunnel_change_run


def _remote():
    return Tunnel.objects.filter(remote_config=True, hostname_count__gt=0).order_by("name").first()


def test_a_change_runs_as_one_step_the_page_shows_and_is_audited_once_under_its_own_action(
    operator, operator_client, synced, run
):
    remote = _remote()
    response = run(
        operator_client,
        reverse("tunnels:hostname_add", args=[remote.cf_id]),
        {"hostname": "step.example.com", "service": "http://step.internal:80"},
    )
    change = TunnelChange.objects.get()
    assert change.status == TunnelChange.Status.SUCCEEDED
    assert change.actor_email == operator.email
    assert change.started_at is not None and change.lease_until is None
    step = change.steps.get()
    assert (step.key, step.status, step.attempts) == ("hostname_add", TunnelChangeStep.Status.DONE, 1)
    page = operator_client.get(response["Location"]).content.decode()
    assert "Add public hostname" in page and "Done" in page and "Succeeded" in page
    actions = list(AuditEntry.objects.exclude(action__startswith="auth.").values_list("action", flat=True))
    assert actions == ["tunnel.hostname_added"]


def test_a_tunnel_another_change_holds_releases_the_lease_and_the_change_goes_on_when_it_is_free(
    operator, synced, monkeypatch
):
    from dashboard.requestinfo import Origin

    monkeypatch.setattr(services, "CLAIM_WAIT_SECONDS", 0.3)
    remote = _remote()
    Tunnel.objects.filter(pk=remote.pk).update(change_claimed_until=timezone.now() + timedelta(minutes=1))
    change = services.hostname_add(
        actor=operator, tunnel=remote, hostname="wait.example.com", service="http://wait.internal:80", origin=Origin()
    )
    outcome = services.tunnel_change_advance(change_id=change.pk)
    assert not outcome.done and outcome.reason == f"Another change to tunnel {remote.name} is still running."
    change.refresh_from_db()
    step = change.steps.get()
    assert change.status == TunnelChange.Status.RUNNING and change.lease_until is None
    assert step.status == TunnelChangeStep.Status.RUNNING and step.error == outcome.reason
    assert not AuditEntry.objects.filter(action__startswith="tunnel.").exists()

    Tunnel.objects.filter(pk=remote.pk).update(change_claimed_until=None)
    tunnel_change_run(change.pk)
    change.refresh_from_db()
    step = change.steps.get()
    assert change.status == TunnelChange.Status.SUCCEEDED
    assert (step.status, step.attempts, step.error) == (TunnelChangeStep.Status.DONE, 2, "")
    assert AuditEntry.objects.filter(action="tunnel.hostname_added").count() == 1


def test_a_change_another_worker_leases_is_left_to_it(operator, synced):
    from dashboard.requestinfo import Origin

    remote = _remote()
    change = services.hostname_add(
        actor=operator, tunnel=remote, hostname="lease.example.com", service="http://lease.internal:80", origin=Origin()
    )
    TunnelChange.objects.filter(pk=change.pk).update(lease_until=timezone.now() + timedelta(minutes=5))
    outcome = services.tunnel_change_advance(change_id=change.pk)
    assert not outcome.done and outcome.wait > 200 and outcome.reason == ""
    assert change.steps.get().attempts == 0
    assert not any(r["hostname"] == "lease.example.com" for r in _ingress(synced, remote))


def _ingress(sim, tunnel):
    return sim.store.get("tunnel_config", str(tunnel.cf_id), sim.account_id)["config"]["ingress"]


def test_changes_made_before_the_engine_get_their_one_step_as_they_ended(transactional_db):
    executor = MigrationExecutor(connection)
    executor.migrate([("tunnels", "0004_push_events")])
    old = MigrationExecutor(connection).loader.project_state([("tunnels", "0004_push_events")]).apps
    OldChange = old.get_model("tunnels", "TunnelChange")
    done = OldChange.objects.create(kind="route_add", state="succeeded", finished_at=timezone.now())
    failed = OldChange.objects.create(kind="tunnel_create", state="failed", error="already exists")
    waiting = OldChange.objects.create(kind="vnet_create", state="pending")
    call_command("migrate", "tunnels", verbosity=0)

    steps = {s.run_id: s for s in TunnelChangeStep.objects.all()}
    assert (steps[done.pk].status, steps[done.pk].label) == ("done", "Add private route")
    assert (steps[failed.pk].status, steps[failed.pk].error) == ("failed", "already exists")
    assert steps[waiting.pk].status == "pending"
    assert TunnelChange.objects.get(pk=failed.pk).reason == "already exists"
    assert TunnelChange.objects.get(pk=waiting.pk).status == TunnelChange.Status.PENDING
