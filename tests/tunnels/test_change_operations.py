"""Tunnel changes as operations of the shared engine: one step the page shows, a lease, waits that release it,
and the audit actions tunnel changes have always written."""

from datetime import timedelta

from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone

from dashboard.models import AuditEntry
from tunnels import changes, services
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


def test_a_change_behind_another_to_its_tunnel_takes_no_lease_or_retry_and_goes_on_when_that_one_stops(
    operator, synced, django_capture_on_commit_callbacks
):
    from cloudflare_sim import faults
    from dashboard.requestinfo import RequestOrigin

    remote = _remote()
    ahead = services.connections_cleanup(actor=operator, tunnel=remote, request_origin=RequestOrigin())
    change = services.hostname_add(
        actor=operator,
        tunnel=remote,
        hostname="wait.example.com",
        service="http://wait.internal:80",
        request_origin=RequestOrigin(),
    )
    outcome = changes.TunnelChanges().advance(run_id=change.pk)
    assert outcome.done and outcome.reason.startswith("Waiting for the change asked before it (clean up stale")
    change.refresh_from_db()
    step = change.steps.get()
    assert change.status == TunnelChange.Status.PENDING and change.lease_until is None
    assert (step.status, step.attempts, step.error) == (TunnelChangeStep.Status.PENDING, 0, outcome.reason)
    assert not AuditEntry.objects.filter(action__startswith="tunnel.").exists()

    # Cloudflare keeps failing the change ahead until it stops: the one behind is sent on as it does.
    faults.save(synced.store, {"rules": [{"endpoint": "GET *connections", "error_rate": 1.0}]})
    with django_capture_on_commit_callbacks(execute=True):
        tunnel_change_run.delay(ahead.pk)
    ahead.refresh_from_db()
    change.refresh_from_db()
    step = change.steps.get()
    assert ahead.status == TunnelChange.Status.FAILED
    assert change.status == TunnelChange.Status.SUCCEEDED
    assert (step.status, step.attempts, step.error) == (TunnelChangeStep.Status.DONE, 1, "")
    assert AuditEntry.objects.filter(action="tunnel.hostname_added").count() == 1


def test_a_stopped_change_is_not_retried_while_a_later_change_to_its_tunnel_is_under_way(
    operator, operator_client, synced
):
    from dashboard.requestinfo import RequestOrigin

    remote = _remote()
    stopped = services.connections_cleanup(actor=operator, tunnel=remote, request_origin=RequestOrigin())
    TunnelChange.objects.filter(pk=stopped.pk).update(status=TunnelChange.Status.FAILED, reason="refused")
    services.hostname_add(
        actor=operator, tunnel=remote, hostname="now.example.com", service="http://now.internal:80",
        request_origin=RequestOrigin(),
    )  # fmt: skip
    response = operator_client.post(reverse("tunnels:change_retry", args=[stopped.public_id]), follow=True)
    assert response.status_code == 200
    busy = "Wait until the change to this tunnel in progress (add public hostname) is done."
    assert busy in response.content.decode()
    assert TunnelChange.objects.get(pk=stopped.pk).status == TunnelChange.Status.FAILED
    assert not AuditEntry.objects.filter(action="tunnel.change_retried").exists()


def test_a_change_another_worker_leases_is_left_to_it(operator, synced):
    from dashboard.requestinfo import RequestOrigin

    remote = _remote()
    change = services.hostname_add(
        actor=operator,
        tunnel=remote,
        hostname="lease.example.com",
        service="http://lease.internal:80",
        request_origin=RequestOrigin(),
    )
    TunnelChange.objects.filter(pk=change.pk).update(lease_until=timezone.now() + timedelta(minutes=5))
    outcome = changes.TunnelChanges().advance(run_id=change.pk)
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


def test_a_change_whose_task_was_lost_is_sent_to_a_worker_again_by_the_resume_pass(operator, synced):
    from dashboard import operations
    from dashboard.requestinfo import RequestOrigin

    remote = _remote()
    # Its task is sent when the request's transaction commits, which never happens here: the message is lost.
    change = services.hostname_add(
        actor=operator,
        tunnel=remote,
        hostname="lost.example.com",
        service="http://lost.internal:80",
        request_origin=RequestOrigin(),
    )
    # Just asked: its task may still be on the way, so the pass leaves it.
    assert operations.operations_resume() == 0
    TunnelChange.objects.filter(pk=change.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    assert operations.operations_resume() == 1
    change.refresh_from_db()
    assert change.status == TunnelChange.Status.SUCCEEDED
    assert "lost.example.com" in [rule.get("hostname") for rule in _ingress(synced, remote)]
    assert operations.operations_resume() == 0


def test_a_change_a_live_worker_holds_is_not_resumed(operator, synced):
    from dashboard import operations
    from dashboard.requestinfo import RequestOrigin

    change = services.hostname_add(
        actor=operator,
        tunnel=_remote(),
        hostname="held.example.com",
        service="http://held.internal:80",
        request_origin=RequestOrigin(),
    )
    TunnelChange.objects.filter(pk=change.pk).update(
        status=TunnelChange.Status.RUNNING,
        lease_until=timezone.now() + timedelta(minutes=1),
        updated_at=timezone.now() - timedelta(minutes=5),
    )
    assert operations.operations_resume() == 0
    # A worker that starts takes it anyway (it may replace the one holding the lease, and its task waits the
    # lease out), but not one whose task is due to come back later.
    engine = changes.TunnelChanges()
    assert engine.runs_to_resume_on_start() == [change.pk]
    TunnelChange.objects.filter(pk=change.pk).update(resume_after=timezone.now() + timedelta(seconds=40))
    assert engine.runs_to_resume_on_start() == []


def test_a_stopped_change_is_retried_from_its_page_and_made_from_what_cloudflare_holds_then(
    operator, operator_client, viewer_client, cloudflare_sim, run
):
    taken = next(v for v in cloudflare_sim.store.list("vnet", cloudflare_sim.account_id))
    # Gatehouse has not synced, so it does not know the name is taken: Cloudflare refuses the change.
    response = run(operator_client, reverse("tunnels:vnet_create"), {"name": taken["name"], "comment": ""})
    change = TunnelChange.objects.get()
    assert change.status == TunnelChange.Status.FAILED and "already exists" in change.reason
    page = operator_client.get(reverse("tunnels:change_detail", args=[change.public_id])).content.decode()
    retry_url = reverse("tunnels:change_retry", args=[change.public_id])
    assert f'action="{retry_url}"' in page
    assert (
        retry_url not in viewer_client.get(reverse("tunnels:change_detail", args=[change.public_id])).content.decode()
    )
    assert viewer_client.post(retry_url).status_code == 403

    # Someone frees the name at Cloudflare; the retry makes the same change again.
    cloudflare_sim.store.delete("vnet", taken["id"])
    response = run(operator_client, retry_url, {})
    assert response["Location"] == reverse("tunnels:change_detail", args=[change.public_id])
    change.refresh_from_db()
    step = change.steps.get()
    assert change.status == TunnelChange.Status.SUCCEEDED and change.reason == ""
    assert (step.status, step.attempts) == (TunnelChangeStep.Status.DONE, 2)
    assert taken["name"] in [v["name"] for v in cloudflare_sim.store.list("vnet", cloudflare_sim.account_id)]
    retried = AuditEntry.objects.get(action="tunnel.change_retried")
    assert retried.actor_email == operator.email and retried.details["change"] == "vnet_create"
    assert list(
        AuditEntry.objects.filter(action__in=["tunnel.change_failed", "vnet.created"])
        .values_list("action", flat=True)
        .order_by("id")
    ) == ["tunnel.change_failed", "vnet.created"]

    # A change that did not stop cannot be retried.
    run(operator_client, retry_url, {})
    assert AuditEntry.objects.filter(action="tunnel.change_retried").count() == 1


def test_a_change_waiting_out_a_retry_is_left_to_the_task_that_comes_back_for_it(operator, synced):
    from dashboard import operations
    from dashboard.requestinfo import RequestOrigin

    change = services.hostname_add(
        actor=operator, tunnel=_remote(), hostname="later.example.com", service="http://later.internal:80",
        request_origin=RequestOrigin(),
    )  # fmt: skip
    now = timezone.now()
    # Backing off after a temporary error: its task comes back in a minute, long after the last progress.
    TunnelChange.objects.filter(pk=change.pk).update(
        status=TunnelChange.Status.RUNNING,
        updated_at=now - timedelta(minutes=5),
        resume_after=now + timedelta(minutes=1),
    )
    assert operations.operations_resume() == 0
    # Its task is long overdue: lost with a worker, so the pass sends another.
    TunnelChange.objects.filter(pk=change.pk).update(resume_after=now - timedelta(minutes=2))
    assert operations.operations_resume() == 1
    change.refresh_from_db()
    assert change.status == TunnelChange.Status.SUCCEEDED


def test_a_step_whose_worker_keeps_dying_stops_the_change_after_so_many_attempts(operator, synced):
    from dashboard import operations
    from dashboard.requestinfo import RequestOrigin

    change = services.hostname_add(
        actor=operator, tunnel=_remote(), hostname="doomed.example.com", service="http://doomed.internal:80",
        request_origin=RequestOrigin(),
    )  # fmt: skip
    # Each attempt so far ended with its worker killed: the step is still running, with no answer.
    TunnelChangeStep.objects.filter(run=change).update(
        status=TunnelChangeStep.Status.RUNNING, attempts=operations.MAX_STEP_ATTEMPTS
    )
    TunnelChange.objects.filter(pk=change.pk).update(status=TunnelChange.Status.RUNNING)
    calls = synced.calls()
    tunnel_change_run(change.pk)
    change.refresh_from_db()
    assert change.status == TunnelChange.Status.FAILED
    assert change.reason.startswith(f"Stopped after {operations.MAX_STEP_ATTEMPTS} attempts")
    assert synced.calls() == calls
    assert AuditEntry.objects.filter(action="tunnel.change_failed").count() == 1


class _Broken(changes.TunnelChanges):
    """The tunnel engine with a step that has a fault of its own."""

    def execute(self, step, receipt):
        raise KeyError("params")


def test_a_fault_in_a_step_stops_the_change_visibly_instead_of_leaving_it_running(operator, synced, caplog):
    from dashboard.requestinfo import RequestOrigin

    change = services.hostname_add(
        actor=operator, tunnel=_remote(), hostname="fault.example.com", service="http://fault.internal:80",
        request_origin=RequestOrigin(),
    )  # fmt: skip
    assert _Broken().advance(run_id=change.pk).done
    change.refresh_from_db()
    step = change.steps.get()
    assert change.status == TunnelChange.Status.FAILED and change.lease_until is None
    assert change.reason == "Gatehouse could not carry out this step (KeyError); the worker's log says why."
    assert step.status == TunnelChangeStep.Status.FAILED
    assert "KeyError: 'params'" in caplog.text


def test_a_change_that_makes_a_token_is_asked_for_again_not_retried(operator, operator_client, cloudflare_sim, run):
    from cloudflare_sim import faults

    faults.save(
        cloudflare_sim.store, {"rules": [{"endpoint": "POST /accounts/{account_id}/cfd_tunnel", "error_rate": 1.0}]}
    )
    run(operator_client, reverse("tunnels:tunnel_create"), {"name": "edge-later"})
    change = TunnelChange.objects.get()
    assert change.status == TunnelChange.Status.FAILED
    page = operator_client.get(reverse("tunnels:change_detail", args=[change.public_id])).content.decode()
    retry_url = reverse("tunnels:change_retry", args=[change.public_id])
    assert retry_url not in page
    response = operator_client.post(retry_url, follow=True)
    assert "Create tunnel is not retried: ask for it again." in response.content.decode()
    change.refresh_from_db()
    assert change.status == TunnelChange.Status.FAILED
