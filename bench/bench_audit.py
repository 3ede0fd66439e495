"""Audit log page at 1,000,000 entries: server time and SQL queries per page, for each kind of filter.

    .venv/bin/python bench/bench_audit.py                 # PostgreSQL at postgres://postgres@127.0.0.1:5432
    .venv/bin/python bench/bench_audit.py --sqlite        # the embedded default
    .venv/bin/python bench/bench_audit.py --rows 200000

The benchmark database (gatehouse_bench, or var/bench-audit.sqlite3) is filled once and reused.
Target (DESIGN.md): <= 100 ms server time, a number of queries that does not grow with the data.
"""

import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ACTIONS = ["auth.signed_in", "auth.signed_out", "user.role_changed", "user.created", "audit.exported", "auth.refused"]


def configure(args) -> None:
    os.environ.setdefault("GATEHOUSE_ENV", "local")
    os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    if args.sqlite:
        os.environ["DATABASE_URL"] = f"sqlite:///{ROOT / 'var' / 'bench-audit.sqlite3'}"
        (ROOT / "var").mkdir(exist_ok=True)
    else:
        import psycopg

        with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'gatehouse_bench'").fetchone():
                conn.execute("CREATE DATABASE gatehouse_bench")
        os.environ["DATABASE_URL"] = f"{args.postgres}/gatehouse_bench"
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


def measure(runs: int) -> None:
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
    print(f"\n{AuditEntry.objects.count():,} audit entries on {connection.vendor}, median of {runs} runs")
    print(f"{'case':<12} {'server ms':>10} {'p95 ms':>8} {'queries':>8} {'rows':>5}")
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
        print(f"{name:<12} {statistics.median(timings):>10.1f} {p95:>8.1f} {len(queries):>8} {rows:>5}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sqlite", action="store_true", help="the embedded default instead of PostgreSQL")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    configure(args)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    fill(args.rows)
    measure(args.runs)


if __name__ == "__main__":
    main()
