"""Push events: the public webhook, and connecting, receiving and disconnecting against the simulator."""

import json
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cloudflare_sim import control
from dashboard.models import AuditEntry
from dashboard.sealing import Purpose, seal
from integrations import cloudflare as cf
from tunnels import push
from tunnels.models import PushConnection, PushEvent, StatusChange, SyncCursor, Tunnel

SECRET = "the-shared-secret"


@pytest.fixture(autouse=True)
def no_refusals_held_back():
    """Refusals this process holds back (counted, not yet written) belong to the test that made them."""
    push.refusals_forget()
    yield
    push.refusals_forget()


def _health(tunnel_id, *, status="DOWN", correlation="c0ffee", ts=1_790_000_000) -> dict:
    return {
        "name": "gatehouse-push tunnel health",
        "text": "Tunnel changed status",
        "data": {"tunnel_id": str(tunnel_id), "tunnel_name": "t1", "new_status": f"TUNNEL_STATUS_TYPE_{status}"},
        "ts": ts,
        "account_id": "0" * 32,
        "policy_id": str(uuid.uuid4()),
        "policy_name": "gatehouse-push tunnel health",
        "alert_type": "tunnel_health_event",
        "alert_correlation_id": correlation,
        "alert_event": "ALERT_STATE_EVENT_START",
    }


@pytest.fixture
def connected(db):
    return PushConnection.objects.create(
        pk=1,
        state=PushConnection.State.CONNECTED,
        secret_sealed=seal(SECRET, purpose=Purpose.PUSH_WEBHOOK),
        url="https://g.example/hooks/cloudflare/",
    )


@pytest.fixture
def tunnel(db):
    return Tunnel.objects.create(cf_id=uuid.uuid4(), name="t1", status="healthy", status_rank=3)


def _post(client, body, *, secret=SECRET, raw=None):
    headers = {"HTTP_CF_WEBHOOK_AUTH": secret} if secret is not None else {}
    data = raw if raw is not None else json.dumps(body)
    return client.post(reverse("dashboard:push_webhook"), data=data, content_type="application/json", **headers)


def test_a_wrong_secret_is_refused_bare_and_counted(client, connected, tunnel):
    response = _post(client, _health(tunnel.cf_id), secret="guess")
    assert (response.status_code, response.content) == (403, b"")
    assert not PushEvent.objects.exists()
    assert PushConnection.objects.get().refused_count == 1


def _writes(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))]


def test_a_flood_of_refused_posts_is_counted_without_a_database_write_each(
    client, admin_client, connected, tunnel, settings
):
    settings.GATEHOUSE_PUSH_REFUSAL_FLUSH_SECONDS = 60
    with CaptureQueriesContext(connection) as queries:
        for _ in range(25):
            _post(client, _health(tunnel.cf_id), secret="guess")
            _post(client, _health(tunnel.cf_id), secret=None)
    writes = _writes(queries)
    assert len(writes) <= 1, f"{len(writes)} database writes for 50 refused posts"
    conn = PushConnection.objects.get()
    assert conn.refused_count == 1 and conn.last_refused_at is not None  # the first of a burst shows at once
    push.refusals_flush()
    conn.refresh_from_db()
    assert conn.refused_count == 50
    page = admin_client.get(reverse("dashboard:settings")).content.decode()
    assert "50 requests without the right secret" in page and "the rest within 60 s" in page


@pytest.mark.django_db(transaction=True)
def test_refusals_held_back_in_a_burst_are_written_when_the_interval_ends(client, settings):
    settings.GATEHOUSE_PUSH_REFUSAL_FLUSH_SECONDS = 0.3
    PushConnection.objects.create(
        pk=1, state=PushConnection.State.CONNECTED, secret_sealed=seal(SECRET, purpose=Purpose.PUSH_WEBHOOK)
    )
    for _ in range(3):
        assert _post(client, {}, secret="guess").status_code == 403
    deadline = time.monotonic() + 10
    while PushConnection.objects.get().refused_count < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert PushConnection.objects.get().refused_count == 3


def test_a_missing_secret_is_refused_with_401(client, connected, tunnel):
    response = _post(client, _health(tunnel.cf_id), secret=None)
    assert (response.status_code, response.content) == (401, b"")
    assert not PushEvent.objects.exists()


def test_nothing_is_accepted_while_push_events_are_off(client, db, tunnel):
    PushConnection.objects.create(
        pk=1, state=PushConnection.State.OFF, secret_sealed=seal(SECRET, purpose=Purpose.PUSH_WEBHOOK)
    )
    assert _post(client, _health(tunnel.cf_id)).status_code == 403
    assert not PushEvent.objects.exists()


def test_a_body_over_64_kib_is_refused_with_413(client, connected, tunnel):
    body = _health(tunnel.cf_id)
    body["text"] = "x" * (64 * 1024)
    assert _post(client, body).status_code == 413
    assert not PushEvent.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        "[]",
        json.dumps({"text": "no ts", "data": {}}),
        json.dumps(
            {**_health(uuid.uuid4()), "data": {"tunnel_id": "not-a-uuid", "new_status": "TUNNEL_STATUS_TYPE_UP"}}
        ),
        json.dumps({**_health(uuid.uuid4()), "alert_type": "dos_attack_l7"}),
        json.dumps({**_health(uuid.uuid4()), "alert_correlation_id": "<script>"}),
    ],
)
def test_a_malformed_notification_is_refused_with_400(client, connected, raw):
    assert _post(client, None, raw=raw).status_code == 400
    assert not PushEvent.objects.exists()


def test_a_notification_is_recorded_and_queues_one_refresh(
    client, connected, tunnel, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as queued:
        response = _post(client, _health(tunnel.cf_id))
    assert (response.status_code, response.content) == (200, b"")
    event = PushEvent.objects.get()
    assert (event.alert_type, event.tunnel_cf_id, event.new_status) == ("tunnel_health_event", tunnel.cf_id, "down")
    assert len(queued) == 1


def test_a_replayed_notification_is_recorded_once(client, connected, tunnel, django_capture_on_commit_callbacks):
    body = _health(tunnel.cf_id)
    with django_capture_on_commit_callbacks() as queued:
        assert _post(client, body).status_code == 200
        assert _post(client, body).status_code == 200
        assert _post(client, {**body, "ts": body["ts"] + 1}).status_code == 200
    assert PushEvent.objects.count() == 2
    assert len(queued) == 2


def test_cloudflares_test_message_is_recorded_without_a_refresh(client, connected, django_capture_on_commit_callbacks):
    body = {"name": "gatehouse", "text": "Hello World! This is a test message", "data": {}, "ts": 1_790_000_000}
    with django_capture_on_commit_callbacks() as queued:
        assert _post(client, body).status_code == 200
    assert PushEvent.objects.get().alert_type == "test"
    assert queued == []


def test_an_unknown_tunnel_makes_the_next_pass_read_the_whole_list(client, connected, db):
    SyncCursor.objects.create(name="status", synced_at="2026-11-30T00:00:00Z")
    assert _post(client, _health(uuid.uuid4())).status_code == 200
    push.refresh(event=PushEvent.objects.get())
    assert SyncCursor.objects.get(name="status").synced_at is None
    assert not Tunnel.objects.exists()


def test_an_older_status_than_the_one_held_is_not_applied(connected, tunnel, cloudflare_sim):
    event = PushEvent.objects.create(
        key="k",
        alert_type="tunnel_health_event",
        sent_at=tunnel.status_since.replace(year=2020),
        tunnel_cf_id=tunnel.cf_id,
        new_status="down",
    )
    push.refresh(event=event)
    tunnel.refresh_from_db()
    assert tunnel.status == "healthy"
    assert not StatusChange.objects.exists()


def test_the_settings_page_says_whether_events_are_arriving(admin_client, connected, client, tunnel):
    _post(client, _health(tunnel.cf_id))
    page = admin_client.get(reverse("dashboard:settings")).content.decode()
    assert "1 in the last hour" in page and "yes: events are arriving" in page
    assert SECRET not in page


def test_connecting_needs_a_public_url(admin_client, db, settings):
    settings.GATEHOUSE_PUBLIC_URL = ""
    response = admin_client.post(reverse("dashboard:push_connect"), follow=True)
    assert "GATEHOUSE_PUBLIC_URL" in response.content.decode()
    assert push.connection().state == PushConnection.State.OFF


# --- against the simulator, with Gatehouse served for real ------------------------------------------------------


@pytest.fixture
def public(live_server, settings, cloudflare_sim):
    settings.GATEHOUSE_PUBLIC_URL = live_server.url
    return cloudflare_sim


def _ours(sim, kind):
    return [d for d in sim.store.list(kind, sim.account_id) if d["name"].startswith("gatehouse-push ")]


def test_connecting_creates_the_destination_and_policies_and_answers_cloudflares_test(admin_client, public):
    admin_client.post(reverse("dashboard:push_connect"))

    conn = push.connection()
    assert conn.state == PushConnection.State.CONNECTED, conn.error
    [webhook] = _ours(public, "alert_webhook")
    assert webhook["url"] == push.webhook_url() and webhook["_secret"]
    assert webhook["id"] == conn.destination_id
    policies = {p["alert_type"]: p for p in _ours(public, "alert_policy")}
    assert set(policies) == {"tunnel_health_event", "tunnel_update_event"}
    assert {policies["tunnel_health_event"]["id"], policies["tunnel_update_event"]["id"]} == {
        conn.health_policy_id,
        conn.update_policy_id,
    }
    assert all(p["mechanisms"] == {"webhooks": [{"id": webhook["id"]}]} and p["enabled"] for p in policies.values())
    # Cloudflare's test message reached Gatehouse and was answered before the destination was saved.
    assert PushEvent.objects.filter(alert_type="test").count() == 1
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"push.connect_requested", "push.connected"} <= actions
    assert webhook["_secret"] not in json.dumps(list(AuditEntry.objects.values_list("details", flat=True)))


def test_disconnecting_removes_everything_gatehouse_created(admin_client, public, live_server, settings):
    # An Access application's domain is a host name in a zone (not "localhost"); the address serves the same.
    settings.GATEHOUSE_PUBLIC_URL = live_server.url.replace("localhost", "127.0.0.1")
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1"]
    admin_client.post(reverse("dashboard:push_connect"), {"access_bypass": "on"})
    assert push.connection().bypass_app_id, push.connection().error
    [app] = _ours(public, "access_app")
    assert app["domain"].endswith("/hooks/cloudflare/")

    admin_client.post(reverse("dashboard:push_disconnect"))

    conn = push.connection()
    assert (conn.state, conn.secret_sealed, conn.destination_id) == (PushConnection.State.OFF, "", "")
    assert _ours(public, "alert_webhook") == [] and _ours(public, "alert_policy") == []
    assert not [
        a for a in public.store.list("access_app", public.account_id) if a["name"].startswith("gatehouse-push ")
    ]
    assert not [
        p for p in public.store.list("access_policy", public.account_id) if p["name"].startswith("gatehouse-push ")
    ]
    assert "push.disconnected" in set(AuditEntry.objects.values_list("action", flat=True))


def test_a_connection_cloudflare_cannot_test_fails_visibly(admin_client, cloudflare_sim, settings, transactional_db):
    settings.GATEHOUSE_PUBLIC_URL = "http://127.0.0.1:9"
    admin_client.post(reverse("dashboard:push_connect"))
    conn = push.connection()
    assert conn.state == PushConnection.State.FAILED
    assert "test message" in conn.error
    assert _ours(cloudflare_sim, "alert_webhook") == []


def test_a_pushed_status_change_is_reflected_within_seconds(admin_client, public):
    from tunnels import sync

    sync.sync_pass()
    admin_client.post(reverse("dashboard:push_connect"))
    assert push.connection().state == PushConnection.State.CONNECTED
    target = Tunnel.objects.get(name="prod-eu-west-1-core")
    assert target.status == "healthy"

    started = time.monotonic()
    control.run_event(public.store, "tunnel-down", time.time(), tunnel=target.name)
    deadline = started + 5
    while time.monotonic() < deadline:
        target.refresh_from_db()
        if (
            target.status == "down"
            and target.connectors.exists()
            and all(c.conns_pending == c.conns_total for c in target.connectors.all())
        ):
            break
        time.sleep(0.05)
    assert target.status == "down", "the pushed change was not reflected within 5 s"
    assert all(c.conns_pending == c.conns_total for c in target.connectors.all())
    assert StatusChange.objects.filter(tunnel=target, new_status="down").exists()
    assert PushEvent.objects.filter(alert_type="tunnel_health_event", tunnel_cf_id=target.cf_id).count() == 1


def _list_calls(sim) -> int:
    return sim.stats()["endpoints"].get("GET /accounts/{account_id}/cfd_tunnel", {"calls": 0})["calls"]


def test_while_events_arrive_the_pass_reads_the_list_less_often_and_rotates_connectors(
    connected, cloudflare_sim, settings
):
    from tunnels import sync

    settings.GATEHOUSE_TUNNEL_SYNC_SECONDS = 300
    sync.sync_pass()
    listed = _list_calls(cloudflare_sim)
    event = PushEvent.objects.create(key="k", alert_type="test", received_at=timezone.now())

    relying = sync.sync_pass()
    assert _list_calls(cloudflare_sim) == listed
    assert relying.complete and relying.tunnels_seen == 0

    PushEvent.objects.filter(pk=event.pk).update(received_at=timezone.now() - timedelta(days=1))
    polling = sync.sync_pass()
    assert _list_calls(cloudflare_sim) == listed + 1
    assert polling.tunnels_seen == Tunnel.objects.count()


def test_reconnecting_updates_what_exists_and_recreates_what_was_deleted_at_cloudflare(admin_client, public):
    admin_client.post(reverse("dashboard:push_connect"))
    first = push.connection()
    public.store.delete("alert_webhook", first.destination_id)
    PushConnection.objects.filter(pk=1).update(state=PushConnection.State.FAILED)

    admin_client.post(reverse("dashboard:push_connect"))

    again = push.connection()
    assert again.state == PushConnection.State.CONNECTED, again.error
    [webhook] = _ours(public, "alert_webhook")
    assert webhook["id"] == again.destination_id != first.destination_id
    policies = _ours(public, "alert_policy")
    assert len(policies) == 2 and {p["id"] for p in policies} == {first.health_policy_id, first.update_policy_id}
    assert all(p["mechanisms"]["webhooks"] == [{"id": webhook["id"]}] for p in policies)


def test_a_refresh_cloudflare_refuses_leaves_the_tunnel_first_in_line_for_the_next_pass(
    connected, cloudflare_sim, settings
):
    from cloudflare_sim import faults
    from tunnels import sync

    settings.GATEHOUSE_TUNNEL_SYNC_SECONDS = 300
    sync.sync_pass()
    target = Tunnel.objects.get(name="prod-eu-west-1-core")
    faults.save(cloudflare_sim.store, {"rules": [{"endpoint": "GET *connections", "error_rate": 1.0}]})
    event = PushEvent.objects.create(
        key="k", alert_type="tunnel_health_event", sent_at=timezone.now(), tunnel_cf_id=target.cf_id, new_status="down"
    )

    with pytest.raises(cf.CloudflareTransient):
        push.refresh(event=event)

    target.refresh_from_db()
    assert (target.status, target.connectors_due) == ("down", True)


# --- connecting and disconnecting as operations of the shared engine -------------------------------------------


def _latest_change():
    from tunnels.models import PushChange

    return PushChange.objects.first()


def test_connecting_runs_a_step_per_object_that_its_page_and_settings_show_without_the_secret(
    admin_client, viewer_client, public
):
    admin_client.post(reverse("dashboard:push_connect"))

    change = _latest_change()
    assert change.status == change.Status.SUCCEEDED and change.actor_email == "admin@example.com"
    assert [(s.key, s.status) for s in change.steps.all()] == [("destination", "done"), ("policies", "done")]
    conn = push.connection()
    answers = [a["answer"] for s in change.steps.all() for a in s.answers]
    assert conn.destination_id in answers and conn.health_policy_id in answers and conn.update_policy_id in answers
    [webhook] = _ours(public, "alert_webhook")
    assert webhook["_secret"] not in json.dumps([list(s.answers) for s in change.steps.all()] + [change.data])
    page_url = reverse("dashboard:push_change_detail", args=[change.public_id])
    assert page_url in viewer_client.get(reverse("dashboard:settings")).content.decode()
    page = viewer_client.get(page_url).content.decode()
    assert "Create or update the webhook destination" in page and "Done" in page
    assert webhook["_secret"] not in page
    fragment = viewer_client.get(page_url, headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in fragment and 'id="push-change-status"' in fragment and "hx-trigger" not in fragment


def test_running_a_connections_task_twice_makes_nothing_more_at_cloudflare(admin_client, public):
    from tunnels.tasks import push_change_run

    admin_client.post(reverse("dashboard:push_connect"))
    change = _latest_change()
    before = public.calls()

    push_change_run.delay(change.pk)

    assert public.calls() == before
    assert len(_ours(public, "alert_webhook")) == 1 and len(_ours(public, "alert_policy")) == 2
    assert AuditEntry.objects.filter(action="push.connected").count() == 1


def test_a_connection_whose_worker_died_mid_step_is_resumed_and_finds_what_it_made(admin_client, public):
    from dashboard import operations
    from tunnels.models import PushChange, PushChangeStep

    admin_client.post(reverse("dashboard:push_connect"))
    change = _latest_change()
    first = push.connection()
    # As things stood had the worker died creating the policies: one made at Cloudflare, the other not yet.
    public.store.delete("alert_policy", first.update_policy_id)
    PushConnection.objects.filter(pk=1).update(state=PushConnection.State.CONNECTING, update_policy_id="")
    PushChange.objects.filter(pk=change.pk).update(
        status=PushChange.Status.RUNNING, finished_at=None, updated_at=timezone.now() - timedelta(minutes=5)
    )
    PushChangeStep.objects.filter(run=change, key="policies").update(status=PushChangeStep.Status.RUNNING)

    assert operations.operations_resume() == 1

    conn = push.connection()
    assert conn.state == PushConnection.State.CONNECTED
    assert conn.destination_id == first.destination_id and conn.health_policy_id == first.health_policy_id
    assert len(_ours(public, "alert_webhook")) == 1
    assert {p["alert_type"] for p in _ours(public, "alert_policy")} == {"tunnel_health_event", "tunnel_update_event"}
    assert len(_ours(public, "alert_policy")) == 2


def test_a_connection_cloudflare_keeps_failing_stops_at_its_step_and_is_retried_from_its_page(
    admin_client, viewer_client, public
):
    from cloudflare_sim import faults

    faults.save(
        public.store, {"rules": [{"endpoint": "POST /accounts/{account_id}/alerting/v3/policies", "error_rate": 1.0}]}
    )
    admin_client.post(reverse("dashboard:push_connect"))
    change = _latest_change()
    conn = push.connection()
    assert change.status == change.Status.FAILED and change.reason.startswith("Cloudflare kept failing")
    assert conn.state == PushConnection.State.FAILED and conn.error == change.reason
    assert [(s.key, s.status) for s in change.steps.all()] == [("destination", "done"), ("policies", "failed")]
    assert AuditEntry.objects.filter(action="push.connect_failed").count() == 1
    retry_url = reverse("dashboard:push_change_retry", args=[change.public_id])
    page_url = reverse("dashboard:push_change_detail", args=[change.public_id])
    assert retry_url in admin_client.get(page_url).content.decode()
    assert retry_url not in viewer_client.get(page_url).content.decode()
    assert viewer_client.post(retry_url).status_code == 403

    faults.save(public.store, {"rules": []})
    response = admin_client.post(retry_url)

    assert response["Location"] == page_url
    change.refresh_from_db()
    assert change.status == change.Status.SUCCEEDED
    assert push.connection().state == PushConnection.State.CONNECTED
    assert len(_ours(public, "alert_webhook")) == 1 and len(_ours(public, "alert_policy")) == 2
    assert AuditEntry.objects.get(action="push.change_retried").actor_email == "admin@example.com"


def test_connecting_or_disconnecting_while_a_change_runs_is_refused_and_keeps_its_secret(
    admin, admin_client, connected, settings
):
    settings.GATEHOUSE_PUBLIC_URL = "https://g.example"
    # A disconnection is recorded; its task has not run (this test's transaction never commits).
    push.push_disconnect(actor=admin)
    sealed = push.connection().secret_sealed
    for name in ("dashboard:push_connect", "dashboard:push_disconnect"):
        response = admin_client.post(reverse(name), follow=True)
        assert response.status_code == 200
        assert "already changing the push connection; wait for it to finish" in response.content.decode()
    conn = push.connection()
    assert (conn.state, conn.secret_sealed) == (PushConnection.State.DISCONNECTING, sealed)
    assert conn.changes.count() == 1


def test_disconnecting_runs_on_the_engine_and_deletes_step_by_step(admin_client, public):
    admin_client.post(reverse("dashboard:push_connect"))
    connected_ids = push.connection()

    admin_client.post(reverse("dashboard:push_disconnect"))

    change = _latest_change()
    assert change.kind == "disconnect" and change.status == change.Status.SUCCEEDED
    assert [s.key for s in change.steps.all()] == ["policies", "destination", "bypass"]
    entry = AuditEntry.objects.get(action="push.disconnected")
    assert entry.details == {
        "policies": sorted([connected_ids.health_policy_id, connected_ids.update_policy_id]),
        "destinations": [connected_ids.destination_id],
    }
