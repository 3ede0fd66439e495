import time

from django.core.management import call_command

from alerts.models import Alert
from cloudflare_sim import control, faults
from tunnels import sync
from tunnels.models import Connector, PublicHostname, Route, StatusChange, SyncPass, Tunnel, VirtualNetwork


def _sim_tunnels(sim):
    return [t for t in sim.store.list("tunnel", sim.account_id) if t["deleted_at"] is None]


def test_first_pass_stores_every_tunnel_with_cloudflares_status(cloudflare_sim, db):
    record = sync.sync_pass()
    expected = {t["id"]: t["status"] for t in _sim_tunnels(cloudflare_sim)}
    stored = {str(t.cf_id): t.status for t in Tunnel.objects.all()}
    assert stored == expected
    assert record.complete and record.tunnels_seen == len(expected)
    # One history row per tunnel: where it started.
    assert StatusChange.objects.filter(old_status="").count() == len(expected)


def test_first_pass_fetches_connectors_routes_vnets_and_hostnames(cloudflare_sim, db, settings):
    # One pass per budget window: the whole background allowance is this pass's to spend.
    settings.GATEHOUSE_TUNNEL_SYNC_SECONDS = 300
    sync.sync_pass()
    running = Tunnel.objects.exclude(status=Tunnel.Status.INACTIVE)
    assert running.filter(connectors_synced_at__isnull=True).count() == 0
    assert Connector.objects.count() == cloudflare_sim.summary["connectors"]
    assert Route.objects.count() == cloudflare_sim.summary["routes"]
    assert VirtualNetwork.objects.count() == 3
    assert PublicHostname.objects.count() == cloudflare_sim.summary["public_hostnames"]
    healthy = Tunnel.objects.filter(status=Tunnel.Status.HEALTHY).first()
    assert healthy.up_since is not None and healthy.versions


def test_pass_records_the_api_calls_it_made(cloudflare_sim, db):
    before = cloudflare_sim.calls()
    record = sync.sync_pass()
    assert record.api_calls == cloudflare_sim.calls() - before
    assert record.api_calls > 0


def test_unchanged_tunnels_add_no_history(synced, db):
    rows = StatusChange.objects.count()
    record = sync.sync_pass()
    assert record.status_changes == 0
    assert StatusChange.objects.count() == rows


def test_tunnel_going_down_is_recorded_and_its_connectors_fetched_in_the_same_pass(synced, db, settings):
    tunnel = Tunnel.objects.filter(status=Tunnel.Status.HEALTHY).first()
    # A slice too thin for any rotation, so only the change can explain the fetch.
    settings.GATEHOUSE_TUNNEL_SYNC_SECONDS = 3
    control.run_event(synced.store, "tunnel-down", time.time(), tunnel=tunnel.name)
    record = sync.sync_pass()
    tunnel.refresh_from_db()
    assert tunnel.status == Tunnel.Status.DOWN
    assert record.status_changes == 1 and record.connectors_fetched == 1
    change = tunnel.status_changes.first()
    assert (change.old_status, change.new_status) == ("healthy", "down")
    connectors = list(tunnel.connectors.all())
    assert connectors and all(c.conns_pending == c.conns_total for c in connectors)


def test_tunnel_going_down_raises_an_alert_and_recovery_resolves_it(synced, db, settings):
    settings.GATEHOUSE_TUNNEL_ALERT_GRACE_SECONDS = 0
    tunnel = Tunnel.objects.filter(status=Tunnel.Status.HEALTHY).first()
    control.run_event(synced.store, "tunnel-down", time.time(), tunnel=tunnel.name)
    sync.sync_pass()
    alert = Alert.objects.get(target_id=str(tunnel.cf_id))
    assert alert.state == Alert.State.OPEN and "down" in alert.subject
    control.run_event(synced.store, "recover", time.time(), tunnel=tunnel.name)
    sync.sync_pass()
    alert.refresh_from_db()
    assert alert.state == Alert.State.RESOLVED


def test_degraded_waits_for_the_grace_before_alerting(synced, db, settings):
    settings.GATEHOUSE_TUNNEL_ALERT_GRACE_SECONDS = 3600
    tunnel = Tunnel.objects.filter(status=Tunnel.Status.HEALTHY).first()
    control.run_event(synced.store, "degrade", time.time(), tunnel=tunnel.name)
    sync.sync_pass()
    tunnel.refresh_from_db()
    assert tunnel.status == Tunnel.Status.DEGRADED
    assert not Alert.objects.filter(target_id=str(tunnel.cf_id)).exists()


def test_deleted_tunnel_leaves_the_live_list_but_keeps_history(synced, db):
    tunnel = Tunnel.objects.filter(status=Tunnel.Status.INACTIVE).first()
    doc = synced.store.get("tunnel", str(tunnel.cf_id), synced.account_id)
    doc["deleted_at"] = "2026-11-23T10:00:00Z"
    synced.store.put("tunnel", doc, synced.account_id)
    sync.sync_pass()
    tunnel.refresh_from_db()
    assert tunnel.deleted_at is not None
    assert tunnel.status_changes.exists()
    assert not Tunnel.objects.filter(deleted_at__isnull=True, pk=tunnel.pk).exists()


def test_a_429_mid_pass_stops_the_pass_and_the_next_pass_sends_nothing_until_retry_after(synced, db):
    faults.clear(synced.store)
    faults.save(synced.store, {"rules": [], "rate_limit": {"limit": 3, "window": 300}})
    for name in [t.name for t in Tunnel.objects.filter(status=Tunnel.Status.HEALTHY)[:4]]:
        control.run_event(synced.store, "tunnel-down", time.time(), tunnel=name)
    record = sync.sync_pass()
    assert not record.complete
    assert "rate limited" in record.error
    # The list went through: statuses are fresh even though connectors were cut short.
    assert Tunnel.objects.filter(status=Tunnel.Status.DOWN).count() >= 4
    assert Tunnel.objects.filter(connectors_due=True).exists()
    calls = synced.calls()
    again = sync.sync_pass()
    assert synced.calls() == calls
    assert not again.complete and again.api_calls == 0


def test_sync_command_prints_the_calls_used(cloudflare_sim, db, capsys):
    call_command("sync_cloudflare", "--once")
    out = capsys.readouterr().out
    record = SyncPass.objects.get()
    assert f"API calls used: {record.api_calls}" in out


def test_rotation_refreshes_the_connectors_checked_longest_ago(synced, db, settings):
    import datetime as dt
    import random

    running = Tunnel.objects.filter(deleted_at__isnull=True).exclude(status=Tunnel.Status.INACTIVE).order_by("pk")
    # Last checked at shuffled times, so that neither creation nor name order is the order of age.
    ages = list(range(len(running)))
    random.Random(1).shuffle(ages)
    checked = {}
    for age, tunnel in zip(ages, running, strict=True):
        checked[tunnel.pk] = dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=age)
        Tunnel.objects.filter(pk=tunnel.pk).update(connectors_synced_at=checked[tunnel.pk])
    # Thirty passes per budget window: this pass's slice has room for a few tunnels, not all of them.
    settings.GATEHOUSE_TUNNEL_SYNC_SECONDS = 10
    record = sync.sync_pass()
    refreshed = set(
        Tunnel.objects.filter(pk__in=checked, connectors_synced_at__year__gt=2020).values_list("pk", flat=True)
    )
    assert 0 < len(refreshed) < len(checked)
    assert refreshed == set(sorted(checked, key=checked.get)[: len(refreshed)])
    assert record.connectors_fetched == len(refreshed)


def test_sync_pass_twice_leaves_the_same_world(synced, db):
    def world():
        return (
            sorted(Tunnel.objects.values_list("cf_id", "status", "connector_count", "route_count", "hostname_count")),
            StatusChange.objects.count(),
            Route.objects.count(),
            PublicHostname.objects.count(),
        )

    sync.sync_pass()
    once = world()
    sync.sync_pass()
    assert world() == once


def test_routes_deleted_at_cloudflare_leave_gatehouse(synced, db, settings):
    route = Route.objects.first()
    doc = synced.store.get("route", str(route.cf_id), synced.account_id)
    doc["deleted_at"] = "2026-11-23T10:00:00Z"
    synced.store.put("route", doc, synced.account_id)
    settings.GATEHOUSE_TUNNEL_SLOW_SYNC_SECONDS = 0
    sync.sync_pass()
    assert not Route.objects.filter(pk=route.pk).exists()
    assert Route.objects.count() == synced.summary["routes"] - 1


def test_sync_reads_every_tunnel_when_cloudflare_serves_smaller_pages_than_asked(synced, db):
    # Gatehouse asks for 1,000 a page; this Cloudflare serves at most 5, so no page is the short last one.
    faults.save(synced.store, {"max_per_page": {"GET /accounts/{account_id}/cfd_tunnel": 5}})
    synced.store.reset_stats("start")
    record = sync.sync_pass()
    assert record.tunnels_seen == len(_sim_tunnels(synced)) == 24
    assert not Tunnel.objects.filter(deleted_at__isnull=False).exists()
    # ceil(24 / 5) pages; the total Cloudflare reports ends the list without asking for an empty page.
    assert synced.stats()["endpoints"]["GET /accounts/{account_id}/cfd_tunnel"]["calls"] == 5


def test_untrusted_text_from_cloudflare_is_cleaned_and_clipped_and_a_malformed_route_left_out(synced, db, settings):
    tunnel = _sim_tunnels(synced)[0]
    tunnel["name"] = "evil\u202etxt.exe\x00" + "x" * 400
    synced.store.put("tunnel", tunnel, synced.account_id)
    route = synced.store.list("route", synced.account_id)[0]
    route["network"] = "not a network"
    synced.store.put("route", route, synced.account_id)
    settings.GATEHOUSE_TUNNEL_SLOW_SYNC_SECONDS = 0
    record = sync.sync_pass()
    assert record.complete, record.error
    stored = Tunnel.objects.get(cf_id=tunnel["id"])
    assert stored.name == ("eviltxt.exe" + "x" * 400)[:255]
    assert not Route.objects.filter(cf_id=route["id"]).exists()
    assert Route.objects.count() == len(synced.store.list("route", synced.account_id)) - 1
