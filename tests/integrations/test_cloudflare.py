import logging
import time

import pytest

from cloudflare_sim import faults
from integrations import cloudflare as cf
from integrations.budget import Limits, Priority, RedisBudget, SqliteBudget


def list_tunnels(client):
    return list(client.zero_trust.tunnels.cloudflared.list(account_id=cf.account_id(), per_page=1000))


def test_call_reaches_cloudflare_through_the_sdk(cloudflare_sim):
    tunnels = cf.call("tunnels.list", list_tunnels)
    assert {t.name for t in tunnels} >= {"prod-eu-west-1-core"}
    # The SDK pages until an empty page: every request it sent was counted against the budget.
    assert cf.budget().used() == cloudflare_sim.calls() == 2


def test_unknown_object_is_not_found_with_cloudflares_message(cloudflare_sim):
    with pytest.raises(cf.CloudflareNotFound) as caught:
        cf.call(
            "tunnels.get",
            lambda c: c.zero_trust.tunnels.cloudflared.get(
                "00000000-0000-4000-8000-000000000000", account_id=cf.account_id()
            ),
        )
    assert caught.value.status == 404 and caught.value.codes
    assert caught.value.message.startswith("tunnels.get: ")


def test_bad_input_is_a_permanent_error(cloudflare_sim):
    with pytest.raises(cf.CloudflareError) as caught:
        cf.call(
            "routes.create",
            lambda c: c.zero_trust.networks.routes.create(
                account_id=cf.account_id(),
                network="10.0.0.0/99",
                tunnel_id="00000000-0000-4000-8000-000000000000",
            ),
        )
    assert not isinstance(caught.value, cf.CloudflareTransient)
    assert caught.value.status == 400


def test_server_errors_are_transient(cloudflare_sim):
    faults.save(
        cloudflare_sim.store, {"rules": [{"endpoint": "GET /accounts/*/cfd_tunnel", "error_rate": 1.0}]}
    )
    with pytest.raises(cf.CloudflareTransient) as caught:
        cf.call("tunnels.list", list_tunnels)
    assert caught.value.status >= 500


def test_a_429_blocks_every_caller_until_retry_after(cloudflare_sim):
    faults.save(cloudflare_sim.store, {"rules": [], "rate_limit": {"limit": 2, "window": 300}})
    cf.call("tunnels.list", list_tunnels)  # a page and the empty page that ends the list
    with pytest.raises(cf.CloudflareTransient) as caught:
        cf.call("tunnels.list", list_tunnels)
    assert caught.value.status == 429 and 0 < caught.value.retry_after <= 300
    sent = cloudflare_sim.calls()
    # The next call, even an urgent one, waits instead of spending a request Cloudflare would refuse.
    with pytest.raises(cf.BudgetExhausted) as waiting:
        cf.call("tunnels.list", list_tunnels, priority=Priority.INTERACTIVE)
    assert waiting.value.retry_after > 0
    assert cloudflare_sim.calls() == sent


def test_background_work_leaves_the_reserve_for_clicks(cloudflare_sim, settings):
    settings.CLOUDFLARE_RATE_LIMIT = 40
    settings.GATEHOUSE_CLOUDFLARE_SHARE = 0.25  # 10 calls
    settings.GATEHOUSE_CLOUDFLARE_INTERACTIVE_RESERVE = 0.2  # 2 of them for clicks
    for _ in range(4):
        cf.call("tunnels.list", list_tunnels)  # two requests each
    with pytest.raises(cf.BudgetExhausted):
        cf.call("tunnels.list", list_tunnels)
    cf.call("tunnels.list", list_tunnels, priority=Priority.INTERACTIVE)
    with pytest.raises(cf.BudgetExhausted):
        cf.call("tunnels.list", list_tunnels, priority=Priority.INTERACTIVE)
    assert cloudflare_sim.calls() == 10


def test_the_token_never_reaches_the_logs(cloudflare_sim, caplog):
    caplog.set_level(logging.DEBUG)
    faults.save(cloudflare_sim.store, {"rules": [], "rate_limit": {"limit": 1, "window": 300}})
    with pytest.raises(cf.CloudflareTransient):
        cf.call("tunnels.list", list_tunnels)
    assert "gatehouse-test-token" not in caplog.text


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def _budgets(tmp_path, clock, limits):
    """Two handles on one budget, as two worker processes would have."""
    yield "sqlite", [SqliteBudget(tmp_path / "b.sqlite3", "acct", limits, clock=clock) for _ in range(2)]
    import os

    import redis

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return
    name = f"test-{time.monotonic_ns()}"
    yield "redis", [RedisBudget(url, name, limits, clock=clock) for _ in range(2)]


def test_the_window_is_shared_and_slides(tmp_path):
    clock = Clock()
    limits = Limits(share=3, reserve=0, window=300)
    for _, (a, b) in _budgets(tmp_path, clock, limits):
        assert a.take(Priority.BACKGROUND).granted
        clock.now += 100
        assert b.take(Priority.BACKGROUND).granted
        assert a.take(Priority.BACKGROUND).granted
        refused = b.take(Priority.BACKGROUND)
        assert not refused.granted and refused.wait == pytest.approx(200)
        clock.now += 201  # the first call has left the window
        assert b.take(Priority.BACKGROUND).granted
        assert a.used() == 3
        a.block(30)
        assert not b.take(Priority.INTERACTIVE).granted
        clock.now += 31
        assert b.take(Priority.INTERACTIVE).granted or b.take(Priority.INTERACTIVE).wait > 0
        clock.now += 10_000
