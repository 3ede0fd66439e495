"""Tunnel status follows connectors; the clock moves the world deterministically."""

from __future__ import annotations

import random

import pytest

from cloudflare_sim import control, world
from cloudflare_sim.world import PENDING_RECONNECT_SECONDS


def _tunnel(cf, account_id, status="healthy"):
    return cf.zero_trust.tunnels.cloudflared.list(account_id=account_id, status=status).result[0]


def test_new_tunnel_is_inactive_until_its_first_connector_runs(cf, app, clock, account_id):
    tunnels = cf.zero_trust.tunnels.cloudflared
    tunnel = tunnels.create(account_id=account_id, name="fresh")
    assert (tunnel.status, tunnel.conns_active_at, tunnel.conns_inactive_at) == ("inactive", None, None)
    control.run_event(app.store, "recover", clock(), tunnel="fresh")
    got = tunnels.get(tunnel.id, account_id=account_id)
    assert got.status == "healthy" and got.conns_active_at is not None and got.conns_inactive_at is None
    assert len(tunnels.connections.get(tunnel.id, account_id=account_id).result) == 2


def test_status_goes_degraded_down_and_back_to_healthy(cf, app, clock, account_id):
    tunnels = cf.zero_trust.tunnels.cloudflared
    tunnel = _tunnel(cf, account_id)
    assert control.run_event(app.store, "degrade", clock(), tunnel=tunnel.id)["status"] == "degraded"
    conns = [c for k in tunnels.connections.get(tunnel.id, account_id=account_id).result for c in k.conns]
    assert sum(c.is_pending_reconnect for c in conns) == 2
    clock.advance(30)
    assert control.run_event(app.store, "tunnel-down", clock(), tunnel=tunnel.id)["status"] == "down"
    down = tunnels.get(tunnel.id, account_id=account_id)
    assert down.conns_inactive_at is not None and down.conns_active_at is not None
    clock.advance(30)
    assert control.run_event(app.store, "recover", clock(), tunnel=tunnel.id)["status"] == "healthy"
    back = tunnels.get(tunnel.id, account_id=account_id)
    assert back.conns_inactive_at is None and back.conns_active_at > down.conns_active_at


def test_connector_down_degrades_and_stale_connections_are_forgotten(cf, app, clock, account_id):
    tunnel = _tunnel(cf, account_id)
    control.run_event(app.store, "connector-down", clock(), tunnel=tunnel.id)
    assert cf.zero_trust.tunnels.cloudflared.get(tunnel.id, account_id=account_id).status == "degraded"
    clock.advance(PENDING_RECONNECT_SECONDS + 1)
    world.forget_stale(app.store, app.store.get("tunnel", tunnel.id), clock())
    # The dropped connector is forgotten; the others hold all their connections.
    assert cf.zero_trust.tunnels.cloudflared.get(tunnel.id, account_id=account_id).status == "healthy"


def test_events_that_do_not_apply_are_refused(app, clock, demo):
    with pytest.raises(LookupError):
        control.run_event(app.store, "degrade", clock(), tunnel="no-such-tunnel")
    inactive = next(t for t in app.store.list("tunnel") if t["status"] == "inactive")
    with pytest.raises(world.EventError):
        control.run_event(app.store, "connector-down", clock(), tunnel=inactive["id"])
    with pytest.raises(ValueError, match="unknown event"):
        control.run_event(app.store, "explode", clock(), tunnel=inactive["id"])


def test_clock_is_deterministic_for_a_seed(tmp_path, clock):
    from cloudflare_sim.seed import seed_demo
    from cloudflare_sim.store import Store

    histories = []
    for run in range(2):
        store = Store(tmp_path / f"run{run}.sqlite3")
        seed_demo(store, clock(), seed=3)
        histories.append([world.tick(store, clock() + 10 * i, seed=5) for i in range(12)])
    assert histories[0] == histories[1]
    assert any(histories[0]), "twelve ticks should move something"


def test_clock_keeps_tunnel_status_consistent_with_connectors(app, clock, demo):
    for i in range(30):
        world.tick(app.store, clock() + 20 * i, seed=9)
    for tunnel in app.store.list("tunnel"):
        assert tunnel["status"] == world.tunnel_status(tunnel, world.connectors(app.store, tunnel["id"]))


def test_sessions_expire_after_their_duration(app, clock, account_id):
    rng = random.Random(0)
    users_with_sessions = {s["user_id"] for s in app.store.list("access_session")}
    assert users_with_sessions
    world.sync_sessions(app.store, account_id, clock() + 10 * 86400, rng, login_chance=0.0)
    assert app.store.list("access_session") == []
