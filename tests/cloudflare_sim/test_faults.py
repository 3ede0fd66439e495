"""Faults on demand: the real rate limit, 5xx, latency, timeouts; and the per-endpoint counters."""

from __future__ import annotations

import json

import cloudflare
import httpx
import pytest

from cloudflare_sim import faults

TUNNELS = "GET /accounts/{account_id}/cfd_tunnel"


def control(app):
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://sim.test/__sim__")


def test_rate_limit_answers_429_with_retry_after_then_recovers(cf, app, clock, account_id):
    faults.save(app.store, {"rate_limit": {"limit": 5, "window": 300}})
    listing = cf.zero_trust.tunnels.cloudflared.with_raw_response.list
    first = listing(account_id=account_id)
    assert first.headers["Ratelimit"] == '"default";r=4;t=300'
    assert first.headers["Ratelimit-Policy"] == '"default";q=5;w=300'
    for _ in range(4):
        listing(account_id=account_id)
    clock.advance(100)
    with pytest.raises(cloudflare.RateLimitError) as error:
        cf.zero_trust.tunnels.cloudflared.list(account_id=account_id)
    response = error.value.response
    assert response.headers["Retry-After"] == "200" and response.json()["errors"][0]["code"] == 971
    clock.advance(199)
    with pytest.raises(cloudflare.RateLimitError):
        cf.zero_trust.tunnels.cloudflared.list(account_id=account_id)
    clock.advance(1)
    assert listing(account_id=account_id).status_code == 200


def test_default_budget_is_cloudflares_1200_per_5_minutes(cf, account_id):
    response = cf.zero_trust.tunnels.cloudflared.with_raw_response.list(account_id=account_id)
    assert response.headers["Ratelimit-Policy"] == '"default";q=1200;w=300'


def test_error_rate_gives_5xx_only_on_the_matching_endpoint(cf, app, account_id):
    faults.save(app.store, {"rules": [{"endpoint": TUNNELS, "error_rate": 1.0, "error_status": 502}]})
    with pytest.raises(cloudflare.InternalServerError) as error:
        cf.zero_trust.tunnels.cloudflared.list(account_id=account_id)
    assert error.value.status_code == 502 and error.value.body["success"] is False
    assert cf.zero_trust.networks.routes.list(account_id=account_id).result


def test_latency_and_timeout_hold_the_request(cf, app, clock, account_id):
    faults.save(
        app.store, {"rules": [{"endpoint": "GET /accounts/{account_id}/teamnet/*", "latency_ms": 150}]}
    )
    cf.zero_trust.networks.routes.list(account_id=account_id)
    assert clock.slept == pytest.approx(0.15)
    faults.save(app.store, {"rules": [{"endpoint": "*", "timeout_s": 30}]})
    with pytest.raises(cloudflare.InternalServerError) as error:
        cf.zero_trust.networks.routes.list(account_id=account_id)
    assert error.value.status_code == 504 and clock.slept == pytest.approx(30.15)


def test_faults_control_endpoint_round_trip(app):
    with control(app) as http:
        body = {"rules": [{"endpoint": "*", "latency_ms": 20}], "rate_limit": {"limit": 100}}
        assert http.put("/faults", content=json.dumps(body)).json()["rate_limit"] == {
            "limit": 100,
            "window": 300,
        }
        assert http.get("/faults").json()["rules"][0]["latency_ms"] == 20
        assert http.put("/faults", content=json.dumps({"rules": [{"error_rate": 3}]})).status_code == 400
        capped = http.put("/faults", content=json.dumps({"max_per_page": {"GET /accounts/*": 3}}))
        assert capped.json()["max_per_page"] == {"GET /accounts/*": 3}
        assert http.put("/faults", content=json.dumps({"max_per_page": {"*": "big"}})).status_code == 400
        assert (
            http.delete("/faults").json()
            == faults.load(app.store)
            == {
                "rules": [],
                "rate_limit": faults.DEFAULT_RATE_LIMIT,
                "max_per_page": {},
                "webhooks": faults.DEFAULT_WEBHOOKS,
            }
        )


def test_stats_count_calls_per_endpoint_and_status_since_reset(cf, app, account_id):
    with control(app) as http:
        http.post("/stats/reset")
        cf.zero_trust.tunnels.cloudflared.list(account_id=account_id)
        cf.zero_trust.tunnels.cloudflared.list(account_id=account_id)
        with pytest.raises(cloudflare.NotFoundError):
            cf.zero_trust.tunnels.cloudflared.get(
                "00000000-0000-4000-8000-000000000000", account_id=account_id
            )
        stats = http.get("/stats").json()
    assert stats["total"] == 3 and stats["by_status"] == {"200": 2, "404": 1}
    assert stats["endpoints"][TUNNELS] == {"calls": 2, "by_status": {"200": 2}}
    assert stats["endpoints"]["GET /accounts/{account_id}/cfd_tunnel/{tunnel_id}"]["by_status"] == {"404": 1}


def test_events_control_endpoint(app, demo):
    with control(app) as http:
        response = http.post(
            "/events", content=json.dumps({"event": "degrade", "tunnel": "prod-eu-west-1-core"})
        )
        assert response.json()["status"] == "degraded"
        assert (
            http.post("/events", content=json.dumps({"event": "degrade", "tunnel": "nope"})).status_code
            == 404
        )
