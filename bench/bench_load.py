"""Signed-in people browsing the main pages against gunicorn on PostgreSQL, at production-sized data.

    .venv/bin/python bench/bench_load.py
    .venv/bin/python bench/bench_load.py --postgres postgres://postgres@127.0.0.1:5432 --workers 3 --seconds 60

Data (filled once into the database gatehouse_bench_load, then reused): 2,000 tunnels, 100,000 origins, 200 vendors,
20,000 audit entries and a few hundred alerts. Gunicorn serves it with --workers (default 3), as compose.yaml does.

Two figures:
  paced       --sessions (50) signed-in sessions, each opening a page about once a second: errors and p95.
  saturation  --clients (8) sessions with no pause between requests: pages per second and p95.
Then, in this process, where each page's server time goes: SQL (time and number of queries) and the rest
(templates, middleware, Python), the median of a few requests.
Targets (issue 13): paced 0 errors, p95 <= 250 ms; saturation >= 200 pages/s on 2 cores.
"""

import argparse
import asyncio
import datetime as dt
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DATABASE = "gatehouse_bench_load"
TUNNELS, ORIGINS, VENDORS, AUDIT = 2_000, 100_000, 200, 20_000


def configure(postgres: str) -> str:
    import psycopg

    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            conn.execute(f"CREATE DATABASE {DATABASE}")
    url = f"{postgres}/{DATABASE}"
    os.environ.update(
        {"GATEHOUSE_ENV": "local", "DJANGO_SETTINGS_MODULE": "dashboard.settings", "DATABASE_URL": url, "REDIS_URL": ""}
    )
    import django

    django.setup()
    return url


def fill() -> None:
    import bench_catalogue
    from django.core.management import call_command
    from django.db import connection

    from alerts.models import Alert
    from dashboard.models import AuditEntry, User
    from tunnels.models import Tunnel
    from vendors.models import Vendor

    call_command("migrate", verbosity=0)
    bench_catalogue.fill(ORIGINS)
    rng = random.Random(13)
    now = dt.datetime.now(dt.UTC)
    if Tunnel.objects.count() < TUNNELS:
        statuses = ["healthy"] * 8 + ["degraded", "down", "inactive"]
        Tunnel.objects.bulk_create(
            [
                Tunnel(
                    cf_id=uuid.UUID(int=n + 1),
                    name=f"bench-tunnel-{n:04d}",
                    status=rng.choice(statuses),
                    connector_count=rng.randint(0, 4),
                    route_count=rng.randint(0, 6),
                )
                for n in range(Tunnel.objects.count(), TUNNELS)
            ],
            batch_size=1000,
        )
    sponsor, _ = User.objects.get_or_create(email="sponsor@example.com", defaults={"role": User.Role.OPERATOR})
    if Vendor.objects.count() < VENDORS:
        Vendor.objects.bulk_create(
            [
                Vendor(
                    name=f"Bench vendor {n:03d}",
                    sponsor=sponsor,
                    review_due=now.date() + dt.timedelta(days=n),
                    status=rng.choice(["active", "active", "active", "suspended", "onboarding"]),
                    contacts=[f"contact{n}@vendor{n}.example"],
                    domains=[f"vendor{n}.example"],
                )
                for n in range(Vendor.objects.count(), VENDORS)
            ]
        )
    if AuditEntry.objects.count() < AUDIT:
        AuditEntry.objects.bulk_create(
            [
                AuditEntry(
                    at=now - dt.timedelta(seconds=n * 30),
                    actor_email=f"user{n % 40}@example.com",
                    action=rng.choice(["auth.signed_in", "user.role_changed", "alert.acknowledged"]),
                    target_type="tunnel",
                    target_id=str(uuid.UUID(int=n % TUNNELS + 1)),
                    target_label=f"bench-tunnel-{n % TUNNELS:04d}",
                    details={"n": n},
                )
                for n in range(AuditEntry.objects.count(), AUDIT)
            ],
            batch_size=2000,
        )
    if Alert.objects.count() < 300:
        Alert.objects.bulk_create(
            [
                Alert(
                    kind="tunnel.down",
                    subject=f"Tunnel bench-tunnel-{n:04d} is down",
                    target_type="tunnel",
                    target_id=str(uuid.UUID(int=n + 1)),
                    target_label=f"bench-tunnel-{n:04d}",
                    state="open" if n < 20 else "resolved",
                    raised_at=now - dt.timedelta(minutes=n),
                )
                for n in range(300)
            ]
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def pages() -> list[str]:
    from discovery.models import Origin
    from tunnels.models import Tunnel
    from vendors.models import Vendor

    tunnels = [str(t) for t in Tunnel.objects.values_list("cf_id", flat=True)[:500]]
    origins = [str(o) for o in Origin.objects.filter(seen_in_traffic=True).values_list("public_id", flat=True)[:500]]
    vendors = [str(v) for v in Vendor.objects.values_list("public_id", flat=True)]
    rng = random.Random(5)
    fixed = [
        "/",
        "/tunnels/",
        "/tunnels/?status=down",
        "/discovery/",
        "/discovery/?sort=sessions",
        "/vendors/",
        "/audit/",
        "/alerts/",
    ]
    detail = [f"/tunnels/{rng.choice(tunnels)}/" for _ in range(40)]
    detail += [f"/discovery/origins/{rng.choice(origins)}/" for _ in range(40)]
    detail += [f"/vendors/{rng.choice(vendors)}/" for _ in range(40)]
    # About half the views are lists and the overview, half detail pages.
    return fixed * 15 + detail


def session_cookies(count: int) -> list[str]:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from dashboard.models import User

    cookies = []
    for n in range(count):
        user, _ = User.objects.get_or_create(email=f"bench-{n}@example.com", defaults={"role": User.Role.VIEWER})
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "allauth.account.auth_backends.AuthenticationBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        cookies.append(store.session_key)
    return cookies


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(url: str, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "GATEHOUSE_ENV": "local",
        "GATEHOUSE_LOG_LEVEL": "WARNING",
        "DATABASE_CONN_MAX_AGE": "60",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "dashboard.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server, base
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("gunicorn did not start") from None
            time.sleep(0.2)


async def browse(base: str, cookie: str, paths: list[str], until: float, pace: float, results: list, rng) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base, cookies={"sessionid": cookie}, timeout=30) as client:
        if pace:
            await asyncio.sleep(rng.random() * pace)  # sessions do not all start on the same beat
        while time.monotonic() < until:
            began = time.monotonic()
            try:
                response = await client.get(rng.choice(paths))
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            took = time.monotonic() - began
            results.append((took, ok))
            if pace:
                await asyncio.sleep(max(0.0, rng.uniform(0.5, 1.5) * pace - took))


def run(base: str, cookies: list[str], paths: list[str], seconds: float, pace: float) -> tuple[int, int, float, float]:
    """(requests, errors, pages per second, p95 ms)."""
    results: list[tuple[float, bool]] = []
    rng = random.Random(11)

    async def main():
        until = time.monotonic() + seconds
        await asyncio.gather(*(browse(base, c, paths, until, pace, results, rng) for c in cookies))

    began = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - began
    times = sorted(t for t, _ in results)
    p95 = times[int(len(times) * 0.95) - 1] * 1000 if times else float("nan")
    return len(results), sum(1 for _, ok in results if not ok), len(results) / elapsed, p95


def where_time_goes(cookie_user_email: str) -> None:
    """Median split of each page's server time: SQL (timed around each query), templates, and the rest (the view's
    Python and the middleware). SQL that a template runs lazily counts as SQL, not as template."""
    from django.db import connection
    from django.template.backends.django import Template
    from django.test import Client
    from django.test.utils import setup_test_environment

    from dashboard.models import User

    setup_test_environment()
    spent = {"sql": 0.0, "queries": 0, "template": 0.0, "depth": 0}
    render = Template.render

    def timed_render(self, *args, **kwargs):
        # Form widgets render through the same class from inside a page: only the outermost render is timed.
        spent["depth"] += 1
        began, sql_before = time.perf_counter(), spent["sql"]
        try:
            return render(self, *args, **kwargs)
        finally:
            spent["depth"] -= 1
            if not spent["depth"]:
                spent["template"] += time.perf_counter() - began - (spent["sql"] - sql_before)

    def timed_query(execute, sql, params, many, context):
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent["sql"] += time.perf_counter() - began
            spent["queries"] += 1

    Template.render = timed_render
    client = Client()
    client.force_login(User.objects.get(email=cookie_user_email))
    sample = pages()
    distinct = list(dict.fromkeys([*sample[:8], sample[120], sample[160], sample[200]]))
    print(f"  {'page':<58} {'server ms':>9} {'SQL ms':>7} {'queries':>7} {'template':>8} {'other':>6}")
    with connection.execute_wrapper(timed_query):
        for path in distinct:
            client.get(path)
            rows = []
            for _ in range(7):
                spent.update(sql=0.0, queries=0, template=0.0)
                began = time.perf_counter()
                response = client.get(path)
                total = time.perf_counter() - began
                assert response.status_code == 200, (path, response.status_code)
                sql, template = spent["sql"], spent["template"]
                rows.append(
                    (total * 1000, sql * 1000, spent["queries"], template * 1000, (total - sql - template) * 1000)
                )
            total, sql, queries, template, other = (statistics.median(column) for column in zip(*rows, strict=True))
            print(f"  {path[:58]:<58} {total:9.1f} {sql:7.1f} {queries:7.0f} {template:8.1f} {other:6.1f}")
    Template.render = render


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    url = configure(args.postgres)
    began = time.monotonic()
    fill()
    print(
        f"data ready in {time.monotonic() - began:.0f} s: {TUNNELS:,} tunnels, {ORIGINS:,} origins, "
        f"{VENDORS} vendors, {AUDIT:,} audit entries"
    )
    paths = pages()
    cookies = session_cookies(max(args.sessions, args.clients))
    server, base = start_gunicorn(url, args.workers)
    try:
        run(base, cookies[:4], paths, 5, 0)  # warm every worker's connections and caches
        total, errors, rate, p95 = run(base, cookies[: args.sessions], paths, args.seconds, 1.0)
        print(
            f"paced: {args.sessions} sessions, ~1 page/s each, {args.seconds:.0f} s: {total} pages, "
            f"{errors} errors, {rate:.0f} pages/s, p95 {p95:.0f} ms  (target: 0 errors, p95 <= 250 ms)"
        )
        total, errors, rate, p95 = run(base, cookies[: args.clients], paths, args.seconds, 0)
        print(
            f"saturation: {args.clients} sessions without pause, {args.workers} gunicorn workers: "
            f"{rate:.0f} pages/s, p95 {p95:.0f} ms, {errors} errors  (target: >= 200 pages/s)"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    print("where the server time goes (one request at a time, in this process):")
    where_time_goes("bench-0@example.com")
    return 0


if __name__ == "__main__":
    sys.exit(main())
