"""Discovery catalogue at 20,000 and 100,000 origins: time and SQL queries per page, for each sort and filter.

    .venv/bin/python bench/bench_catalogue.py                 # SQLite (the embedded default)
    .venv/bin/python bench/bench_catalogue.py --postgres postgres://postgres@127.0.0.1:5432
    .venv/bin/python bench/bench_catalogue.py --origins 5000 20000    # two other sizes, smaller first

Each case is measured at both sizes, so that "does not grow with the data" is seen rather than assumed. The time
is one GET of the catalogue through Django's test client in this process, after one warm-up GET of the same page:
middleware, view, SQL and template rendering, without an HTTP server, network or browser. Each size has its own
database (var/bench-catalogue-<size>.sqlite3 or gatehouse_bench_catalogue_<size>), measured in a process of its
own, filled once and reused.
Target (DESIGN.md): <= 100 ms server time, a number of queries that does not grow with the data.
"""

import argparse
import datetime as dt
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VNETS = [
    "3b1bd4e6-2a5e-4d53-9d3c-0e3e1d6b7a10",
    "0e6a1b22-7e0f-4a4a-8a5e-9d2b8c1f3a44",
    "7c2d9f10-1111-4a4a-8a5e-222233334444",
]
TUNNELS = [f"8f0cb2b4-6a2e-4b7a-9a57-{n:012x}" for n in range(40)]
PORTS = [443, 80, 5432, 6379, 22, 3389, 8080, 9200, 3306, 10000, 53]


def configure(args, count: int) -> None:
    os.environ.setdefault("GATEHOUSE_ENV", "local")
    os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    if args.postgres:
        import psycopg

        name = f"gatehouse_bench_catalogue_{count}"
        with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f"CREATE DATABASE {name}")  # an integer in a fixed name
        os.environ["DATABASE_URL"] = f"{args.postgres}/{name}"
    else:
        (ROOT / "var").mkdir(exist_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{ROOT / 'var' / f'bench-catalogue-{count}.sqlite3'}"
    import django
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()


def routes() -> None:
    """The virtual networks by name, and private routes covering half of the 10.0.0.0/8 the origins live in."""
    import uuid

    from tunnels.models import Route, Tunnel, VirtualNetwork

    tunnel, _ = Tunnel.objects.get_or_create(cf_id=uuid.UUID(int=1), defaults={"name": "bench-tunnel"})
    for i, vnet in enumerate(VNETS):
        network, _ = VirtualNetwork.objects.get_or_create(
            cf_id=uuid.UUID(vnet), defaults={"name": f"bench-vnet-{i}", "is_default": i == 0}
        )
        for second in range(0, 256, 2):
            Route.objects.get_or_create(
                cf_id=uuid.UUID(int=(i << 16) + second + 2),
                defaults={"network": f"10.{second}.0.0/16", "tunnel": tunnel, "tunnel_cf_id": tunnel.cf_id,
                          "virtual_network": network},
            )  # fmt: skip


def fill(count: int) -> None:
    from django.core.management import call_command

    from discovery.models import Application, Origin, ReviewState, ip_key

    call_command("migrate", verbosity=0)
    routes()
    have = Origin.objects.count()
    if have >= count:
        return
    began = time.perf_counter()
    rng = random.Random()  # reseeded for each origin below
    apps = [
        Application.objects.get_or_create(
            name=f"bench-app-{i}",
            defaults={"protection": Application.Protection.PROTECTED if i % 2 else Application.Protection.NONE},
        )[0]
        for i in range(20)
    ]
    now = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    states = [ReviewState.UNREVIEWED] * 6 + [ReviewState.IN_REVIEW, ReviewState.APPROVED, ReviewState.UNAPPROVED]
    batch = []
    for n in range(have, count):
        # Seeded by the origin's number, so that origin n is the same whatever size the database is filled to.
        rng.seed(n)
        # The lowest byte of n picks the /16, so that the smaller size already spreads over all of 10.0.0.0/8 and
        # an address or CIDR filter finds origins at both sizes.
        address = f"10.{n & 255}.{n >> 8 & 255}.{n >> 16 & 255}"
        traffic = rng.random() < 0.85
        sessions = int(rng.paretovariate(1.2) * 10) if traffic else 0
        origin = Origin(
            vnet_id=VNETS[n % len(VNETS)],
            address=address,
            ip_key=ip_key(address),
            port=PORTS[n % len(PORTS)],
            protocol="UDP" if PORTS[n % len(PORTS)] in (53, 10000) else "TCP",
            seen_in_traffic=traffic,
            seen_in_inventory=not traffic or rng.random() < 0.2,
            sessions=sessions,
            bytes_total=sessions * rng.randint(1_000, 1_000_000),
            users=min(sessions, rng.randint(0, 300)),
            last_seen=now - dt.timedelta(minutes=rng.randint(0, 60 * 24 * 30)) if traffic else None,
            first_seen=now - dt.timedelta(days=30) if traffic else None,
            review_state=rng.choice(states),
            application=rng.choice(apps) if rng.random() < 0.1 else None,
            hostnames=[f"host-{n}.internal.example"] if rng.random() < 0.3 else [],
            tunnel_id=TUNNELS[n % len(TUNNELS)] if traffic else "",
            top_users={"alice@example.com": 3, "bob@example.com": 2},
        )
        origin.search_text = origin.compute_search_text()
        batch.append(origin)
        if len(batch) == 5000:
            Origin.objects.bulk_create(batch)
            batch.clear()
    Origin.objects.bulk_create(batch)
    # Planner statistics, as autovacuum (PostgreSQL) or a periodic ANALYZE (SQLite) keep them in a live database.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"filled {count - have:,} origins in {time.perf_counter() - began:.1f} s")


CASES = [
    ("first page, by users", {}),
    ("by sessions", {"sort": "sessions"}),
    ("by bytes", {"sort": "bytes"}),
    ("by last seen", {"sort": "last_seen"}),
    ("unreviewed", {"state": "unreviewed"}),
    ("unapproved, by last seen", {"state": "unapproved", "sort": "last_seen"}),
    ("one virtual network", {"vnet": VNETS[1]}),
    ("port 5432", {"port": "5432"}),
    ("CIDR 10.1.0.0/16", {"cidr": "10.1.0.0/16"}),
    ("inventory only", {"source": "inventory"}),
    ("covered by Access", {"covered": "yes"}),
    ("not covered", {"covered": "no"}),
    ("text 'host-4242'", {"q": "host-4242"}),
    ("text 'internal' (30 % match)", {"q": "internal"}),
    ("text '10.1.2' (address)", {"q": "10.1.2"}),
    ("text 'zzz' (no match)", {"q": "zzz"}),
    ("no private route", {"route": "no"}),
    ("carried by a route", {"route": "yes"}),
    ("page 20 (cursor)", None),
]


def measure(repeats: int) -> dict[str, tuple[float, int, int]]:
    """Per case: (median ms, SQL queries, origins listed) of one catalogue GET through the test client."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from dashboard.models import User
    from discovery import selectors

    user, _ = User.objects.get_or_create(email="bench-viewer@example.com", defaults={"role": User.Role.VIEWER})
    client = Client()
    client.force_login(user)
    url = reverse("discovery:origin_list")
    # The cursor twenty pages in, by users.
    after = None
    for _ in range(19):
        page = selectors.origin_page(filters=selectors.OriginFilters(), sort="users", after=after, size=50)
        after = selectors.Cursor.decode(page.next_cursor)
    results = {}
    for name, query in CASES:
        if query is None:
            query = {"after": after.encode()}
        client.get(url, query)  # warm caches, as a page in use would be
        times = []
        for _ in range(repeats):
            with CaptureQueriesContext(connection) as queries:
                began = time.perf_counter()
                response = client.get(url, query)
                times.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, response.status_code
        rows = len(set(re.findall(r'href="/discovery/origins/([0-9a-f-]{36})/"', response.content.decode())))
        results[name] = (statistics.median(times), len(queries), rows)
    return results


def report(by_size: dict[int, dict[str, tuple[float, int, int]]], vendor: str, repeats: int) -> None:
    small, large = sorted(by_size)
    print(f"\nGET /discovery/ on {vendor}, median of {repeats} requests through Django's test client in this process,")
    print("each after one warm-up request: middleware, view, SQL and template; no HTTP server, network or browser")
    print(f"  {'case':<28} {f'ms at {small:,}':>14} {f'ms at {large:,}':>14} {'queries':>9} {'rows':>9}")
    grew = []
    for name, (ms, queries, rows) in by_size[small].items():
        ms_l, queries_l, rows_l = by_size[large][name]
        if queries_l != queries:
            grew.append(name)
        print(f"  {name:<28} {ms:14.1f} {ms_l:14.1f} {f'{queries} / {queries_l}':>9} {f'{rows} / {rows_l}':>9}")
    print(f"  queries at {small:,} and {large:,} origins: " + (f"differ for {', '.join(grew)}" if grew else "the same"))
    print("  target: <= 100 ms server time, queries constant")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--origins", type=int, nargs=2, default=[20_000, 100_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--postgres", help="e.g. postgres://postgres@127.0.0.1:5432 (default: SQLite)")
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)  # a child process: measure, print JSON
    args = parser.parse_args()
    if args.one_size:
        configure(args, args.one_size)
        from django.db import connection

        fill(args.one_size)
        print(json.dumps({"vendor": connection.vendor, "results": measure(args.repeats)}))
        return 0
    if args.origins[0] == args.origins[1] or min(args.origins) < 1100:
        parser.error("--origins needs two different sizes of at least 1,100 (the cursor case is 20 pages of 50 in)")
    by_size, vendor = {}, ""
    for count in sorted(args.origins):
        argv = [sys.executable, __file__, "--one-size", str(count), "--repeats", str(args.repeats)]
        argv += ["--postgres", args.postgres] if args.postgres else []
        done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True)
        *filled, last = done.stdout.strip().splitlines()
        for line in filled:
            print(line)
        child = json.loads(last)
        vendor, by_size[count] = child["vendor"], {name: tuple(row) for name, row in child["results"].items()}
    report(by_size, vendor, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
