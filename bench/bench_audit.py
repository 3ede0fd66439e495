"""Audit log page at 100,000 and 1,000,000 entries: time and SQL queries per page, for each kind of filter.

    .venv/bin/python bench/bench_audit.py                        # PostgreSQL at postgres://postgres@127.0.0.1:5432
    .venv/bin/python bench/bench_audit.py --sqlite               # the embedded default
    .venv/bin/python bench/bench_audit.py --rows 20000 200000    # two other sizes, smaller first

Each case is measured at both sizes, so that "does not grow with the data" is seen rather than assumed. The time
is one GET /audit/ through Django's test client in this process: middleware, view, SQL and template rendering,
without an HTTP server, network or browser. Each size has its own database (gatehouse_bench_audit_<size>, or
var/bench-audit-<size>.sqlite3), measured in a process of its own, filled once and reused: the audit log is
append-only, so one database cannot be cut back to the smaller size.
Target (DESIGN.md): <= 100 ms server time, a number of queries that does not grow with the data.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ACTIONS = ["auth.signed_in", "auth.signed_out", "user.role_changed", "user.created", "audit.exported", "auth.refused"]


def configure(args, rows: int) -> None:
    os.environ.setdefault("GATEHOUSE_ENV", "local")
    os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    if args.sqlite:
        os.environ["DATABASE_URL"] = f"sqlite:///{ROOT / 'var' / f'bench-audit-{rows}.sqlite3'}"
        (ROOT / "var").mkdir(exist_ok=True)
    else:
        import psycopg

        name = f"gatehouse_bench_audit_{rows}"
        with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f"CREATE DATABASE {name}")  # an integer in a fixed name
        os.environ["DATABASE_URL"] = f"{args.postgres}/{name}"
    import django
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()  # so the test client records the page it rendered


def fill(rows: int) -> None:
    from django.db import connection

    from dashboard.models import AuditEntry

    have = AuditEntry.objects.count()
    if have >= rows:
        return
    missing = rows - have
    started = time.perf_counter()
    actions = ", ".join(f"'{a}'" for a in ACTIONS)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"""
                INSERT INTO dashboard_auditentry
                    (at, actor_email, action, target_type, target_id, target_label, details, source_ip, request_id)
                SELECT now() - make_interval(secs => %s - g), 'person' || (g %% 200) || '@example.com',
                       (ARRAY[{actions}])[1 + g %% {len(ACTIONS)}], 'user', 'u-' || (g %% 20000),
                       'target-' || (g %% 20000), '{{"n": 1}}'::jsonb, '203.0.113.7', md5(g::text)
                FROM generate_series(1, %s) AS g
                """,  # noqa: S608 (constants only)
                [missing, missing],
            )
            cursor.execute("ANALYZE dashboard_auditentry")
        else:
            cursor.execute(
                f"""
                WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < %s)
                INSERT INTO dashboard_auditentry
                    (at, actor_email, action, target_type, target_id, target_label, details, source_ip, request_id)
                SELECT datetime('now', '-' || (%s - n) || ' seconds'), 'person' || (n %% 200) || '@example.com',
                       json_extract('{json.dumps(ACTIONS)}', '$[' || (n %% {len(ACTIONS)}) || ']'), 'user',
                       'u-' || (n %% 20000), 'target-' || (n %% 20000), '{{"n": 1}}', '203.0.113.7', hex(n)
                FROM g
                """,  # noqa: S608 (constants only)
                [missing, missing],
            )
            cursor.execute("ANALYZE")
    print(f"filled {missing:,} entries in {time.perf_counter() - started:.1f} s")


def measure(runs: int) -> dict[str, tuple[float, float, int, int]]:
    """Per case: (median ms, p95 ms, SQL queries, rows shown) of GET /audit/ through the test client."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from dashboard.models import AuditEntry, User
    from dashboard.selectors import AuditCursor

    admin, _ = User.objects.get_or_create(email="bench@example.com", defaults={"role": User.Role.ADMIN})
    client = Client()
    client.force_login(admin)
    oldest = AuditEntry.objects.order_by("at", "id").values_list("id", "at").first()
    newest_at = AuditEntry.objects.order_by("-at", "-id").values_list("at", flat=True).first()
    # A page 5,000 entries from the oldest: the cursor a person reaches after paging back most of the way.
    deep = AuditEntry.objects.order_by("at", "id").values_list("at", "id")[5000]
    deep_cursor = str(AuditCursor(at=deep[0], id=deep[1]))
    cases = {
        "first page": {},
        "actor": {"actor": "person7@example.com"},
        "action": {"action": "user.role_changed"},
        "target": {"target": "target-1234"},
        "last hour": {"since": (newest_at - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")},
        "oldest day": {"until": (oldest[1] + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")},
        "deep page": {"before": deep_cursor},
        "htmx table": {"action": "auth.signed_in", "_htmx": "1"},
    }
    results = {}
    for name, params in cases.items():
        headers = {"HX-Request": "true"} if params.pop("_htmx", None) else {}
        timings = []
        for _ in range(runs):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get("/audit/", params, headers=headers)
                timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.status_code
        rows = len(response.context["page"].entries)
        p95 = sorted(timings)[max(0, int(len(timings) * 0.95) - 1)]
        results[name] = (statistics.median(timings), p95, len(queries), rows)
    return results


def report(by_size: dict[int, dict[str, tuple[float, float, int, int]]], vendor: str, runs: int) -> None:
    small, large = sorted(by_size)
    print(f"\nGET /audit/ on {vendor}, median (and p95) of {runs} requests through Django's test client in this")
    print("process: middleware, view, SQL and template; no HTTP server, network or browser")
    print(f"{'case':<12} {f'ms at {small:,}':>20} {f'ms at {large:,}':>20} {'queries':>9} {'rows':>11}")
    grew = []
    for name, (ms, p95, queries, rows) in by_size[small].items():
        ms_l, p95_l, queries_l, rows_l = by_size[large][name]
        if queries_l != queries:
            grew.append(name)
        print(
            f"{name:<12} {f'{ms:.1f} ({p95:.1f})':>20} {f'{ms_l:.1f} ({p95_l:.1f})':>20} "
            f"{f'{queries} / {queries_l}':>9} {f'{rows} / {rows_l}':>11}"
        )
    print(f"queries at {small:,} and {large:,} entries: " + (f"differ for {', '.join(grew)}" if grew else "the same"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs=2, default=[100_000, 1_000_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sqlite", action="store_true", help="the embedded default instead of PostgreSQL")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)  # a child process: measure, print JSON
    args = parser.parse_args()
    if args.one_size:
        configure(args, args.one_size)
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        fill(args.one_size)
        print(json.dumps({"vendor": connection.vendor, "results": measure(args.runs)}))
        return
    if args.rows[0] == args.rows[1] or min(args.rows) <= 5000:
        parser.error("--rows needs two different sizes above 5,000 (the deep page is 5,000 entries in)")
    by_size, vendor = {}, ""
    for rows in sorted(args.rows):
        argv = [sys.executable, __file__, "--one-size", str(rows), "--runs", str(args.runs)]
        argv += ["--sqlite"] if args.sqlite else ["--postgres", args.postgres]
        done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True)
        *filled, last = done.stdout.strip().splitlines()
        for line in filled:
            print(line)
        child = json.loads(last)
        vendor, by_size[rows] = child["vendor"], {name: tuple(row) for name, row in child["results"].items()}
    report(by_size, vendor, args.runs)


if __name__ == "__main__":
    main()
