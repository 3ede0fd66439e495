"""Tunnel sync and tunnel list at scale, against the simulator seeded with 2,000 tunnels.

    .venv/bin/python bench/bench_tunnels.py

Prints: API calls for a first full sync, API calls per 5 minutes in steady state (default settings: a pass every
GATEHOUSE_TUNNEL_SYNC_SECONDS, 25 % share of 1,200 / 5 min), status freshness and how often each running
tunnel's connectors are refreshed, and the tunnel list's server time and SQL queries at 2,000 and 20,000 tunnels.
Everything runs in a temporary folder (SQLite database, simulator state, budget); nothing else is touched.
Targets (DESIGN.md): 2,000 tunnels fresh within 60 s using <= 25 % of the budget; list <= 50 ms, constant queries.
"""

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="gatehouse-bench-tunnels-"))
os.environ.update(
    {
        "GATEHOUSE_ENV": "local",
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "GATEHOUSE_VAR_DIR": str(WORK),
        "DATABASE_URL": f"sqlite:///{WORK / 'bench.sqlite3'}",
        "REDIS_URL": "",
        "GATEHOUSE_LOG_LEVEL": "WARNING",
    }
)

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

from cloudflare_sim import control  # noqa: E402
from cloudflare_sim.app import make_app  # noqa: E402
from cloudflare_sim.seed import seed_scale  # noqa: E402
from cloudflare_sim.server import make_http_server  # noqa: E402
from integrations import cloudflare as cf  # noqa: E402

TUNNELS = 2000
SIM_TOKEN = "bench-token"  # noqa: S105 - the simulator on loopback accepts whatever it was started with


def point_at(sim_url: str, account_id: str, budget: str, *, share: float, limit: int, interval: float) -> None:
    settings.CLOUDFLARE_API_TOKEN = SIM_TOKEN
    settings.CLOUDFLARE_ACCOUNT_ID = account_id
    settings.CLOUDFLARE_BASE_URL = sim_url
    settings.GATEHOUSE_CLOUDFLARE_BUDGET_NAME = budget
    settings.GATEHOUSE_CLOUDFLARE_SHARE = share
    settings.CLOUDFLARE_RATE_LIMIT = limit
    settings.GATEHOUSE_TUNNEL_SYNC_SECONDS = interval
    cf._client.cache_clear()
    cf._budget.cache_clear()


def list_timing(client: Client, url: str, runs: int = 30) -> tuple[float, int]:
    client.get(url)  # warm caches and the connection
    times, queries = [], set()
    for _ in range(runs):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
        queries.add(len(captured.captured_queries))
    return statistics.median(times), max(queries)


def main() -> None:
    from dashboard.models import User
    from tunnels import sync
    from tunnels.models import Connector, Tunnel

    setup_test_environment()
    call_command("migrate", verbosity=0)
    app = make_app(str(WORK / "cloudflare.sqlite3"), SIM_TOKEN, seed=3)
    summary = seed_scale(app.store, time.time(), TUNNELS, seed=3)
    # The simulator's own rate limit stays Cloudflare's (1,200 / 5 min) for the steady state; the first full sync
    # below is measured with both limits lifted, to count the calls it needs rather than wait for the windows.
    server = make_http_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/client/v4"
    account = summary["account_id"]
    interval = float(os.environ.get("GATEHOUSE_TUNNEL_SYNC_SECONDS", "30"))
    print(f"Simulator: {TUNNELS} tunnels, {summary['connectors']} connectors, {summary['routes']} routes")

    from cloudflare_sim import faults

    faults.save(app.store, {"rules": [], "rate_limit": {"limit": 1_000_000, "window": 300}})
    point_at(url, account, "bench-first", share=1.0, limit=1_000_000, interval=300)
    started = time.perf_counter()
    first = sync.sync_pass()
    took = time.perf_counter() - started
    running = Tunnel.objects.exclude(status="inactive").count()
    print("\nFirst full sync (status, every connector, routes, virtual networks, DNS, remote configurations)")
    pages = -(-first.tunnels_seen // 1000)
    print(f"  API calls: {first.api_calls}  = {pages} list pages for status")
    print(f"    + {first.connectors_fetched} connector calls ({running} running tunnels)")
    print(f"    + {first.configs_fetched} configurations + slower parts ({first.slow_parts})")
    print(
        f"  wall time {took:.1f} s; at a 25 % share (240 background calls / 5 min) this spreads over "
        f"{first.api_calls / 240 * 5:.0f} min, status fresh from the first pass"
    )

    faults.clear(app.store)
    point_at(url, account, "bench-steady", share=0.25, limit=1200, interval=interval)
    passes = int(300 / interval)
    calls, fetched, changed, durations, due_left = 0, 0, 0, [], 0
    names = list(Tunnel.objects.filter(status="healthy").values_list("name", flat=True)[: passes * 3])
    for i in range(passes):
        for name in names[i * 3 : i * 3 + 3]:
            control.run_event(app.store, "tunnel-down", time.time(), tunnel=name)
        started = time.perf_counter()
        record = sync.sync_pass()
        durations.append(time.perf_counter() - started)
        calls += record.api_calls
        fetched += record.connectors_fetched
        changed += record.status_changes
        due_left += Tunnel.objects.filter(connectors_due=True, deleted_at__isnull=True).count()
    rotation = max(1, fetched - changed)
    print(
        f"\nSteady state: {passes} passes = 5 minutes at one pass every {interval:.0f} s, 3 tunnels going down per pass"
    )
    print(f"  API calls per 5 min: {calls} ({calls / 1200:.1%} of 1,200; Gatehouse's share is 300, 60 kept for clicks)")
    print(
        f"  status changes seen: {changed}; connectors fetched: {fetched} "
        f"(changed tunnels left waiting after their pass: {due_left})"
    )
    print(
        f"  status freshness: every pass lists all {TUNNELS} tunnels -> at most {interval:.0f} s + pass time "
        f"(median {statistics.median(durations):.2f} s, max {max(durations):.2f} s)"
    )
    print(f"  connectors of each running tunnel refreshed about every {running / rotation * 5:.0f} min")

    from alerts.models import Alert

    victim = Tunnel.objects.filter(status="healthy").exclude(name__in=names).first()
    went_down = time.time()
    control.run_event(app.store, "tunnel-down", went_down, tunnel=victim.name)
    sync.sync_pass()
    alert = Alert.objects.get(target_id=str(victim.cf_id), state="open")
    lag = alert.raised_at.timestamp() - went_down
    print(
        f"  alert for a tunnel going down: raised {lag:.2f} s after the next pass starts "
        f"-> within {interval:.0f} s + {lag:.1f} s of the outage (deliveries are queued in the same transaction)"
    )

    user = User.objects.create_user(email="bench@example.com", role=User.Role.VIEWER)
    client = Client()
    client.force_login(user)
    print("\nTunnel list (/tunnels/, 50 per page, sorted by status), median of 30 requests")
    for total in (TUNNELS, 20_000):
        have = Tunnel.objects.count()
        if have < total:
            Tunnel.objects.bulk_create(
                [
                    Tunnel(
                        cf_id=f"00000000-0000-4000-8000-{i:012d}",
                        name=f"synthetic-{i:05d}",
                        status="healthy",
                        status_rank=3,
                        versions="2026.9.0,2026.10.0",
                        connector_count=2,
                    )
                    for i in range(total - have)
                ],
                batch_size=2000,
            )
        for label, query in (("default", ""), ("search + filter", "?q=eu&status=healthy&sort=uptime")):
            ms, queries = list_timing(client, f"/tunnels/{query}")
            print(f"  {total:>6} tunnels, {label:<16}: {ms:6.1f} ms, {queries} SQL queries")
    print(f"\n(connectors stored: {Connector.objects.count()})")
    server.shutdown()
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
