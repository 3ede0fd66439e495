"""Revoke: a vendor with 12 applications, 3 service tokens and 4 contacts, at 150 ms Cloudflare latency.

    .venv/bin/python bench/bench_revoke.py [--latency-ms 150] [--repeat 2] [--redis URL | --redis '']

Measures click → verified revoked: from the service a Revoke click calls to the run's verified finish, with the
workflow's Celery tasks run in place (eager) against the simulator over HTTP on loopback. Then the same revocation
of an identical vendor with every Cloudflare call made one after another, for comparison.
Target (DESIGN.md): <= 1 s with 150 ms latency.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=150)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379/15",
        help="where the API budget lives, as in production; '' for the embedded default's SQLite file",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gatehouse-bench-revoke-"))
    state = str(work / "cloudflare.sqlite3")
    # The simulator runs as its own process, as Cloudflare would: it must not share Gatehouse's interpreter.
    seeded = subprocess.run(
        [
            sys.executable,
            "-m",
            "cloudflare_sim",
            "seed",
            "--state",
            state,
            "--scenario",
            "demo",
            "--seed",
            "1",
            "--json",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    summary = json.loads(seeded.stdout.strip().splitlines()[-1])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "cloudflare_sim", "serve", "--state", state, "--port", str(port), "--no-clock"],
        cwd=ROOT,
        env={**os.environ, "CLOUDFLARE_API_TOKEN": "bench-token"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/__sim__/health", timeout=1).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    from cloudflare_sim.app import make_app

    sim = make_app(state, "bench-token")

    os.environ.update(
        {
            "GATEHOUSE_ENV": "local",
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "GATEHOUSE_VAR_DIR": str(work),
            "DATABASE_URL": f"sqlite:///{work / 'gatehouse.sqlite3'}",
            "CELERY_TASK_ALWAYS_EAGER": "true",
            "CLOUDFLARE_BASE_URL": f"http://127.0.0.1:{port}/client/v4",
            "CLOUDFLARE_API_TOKEN": "bench-token",
            "CLOUDFLARE_ACCOUNT_ID": summary["account_id"],
            "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
            "GATEHOUSE_LOG_LEVEL": "WARNING",
            # The benchmark onboards several vendors in a minute; give it the account's whole limit.
            "GATEHOUSE_CLOUDFLARE_SHARE": "1.0",
        }
    )
    if args.redis:
        import redis

        try:
            redis.Redis.from_url(args.redis, socket_connect_timeout=1).ping()
        except redis.RedisError:
            print(f"no Redis at {args.redis}; the API budget lives in a SQLite file")
            args.redis = ""
    if args.redis:
        # Production keeps the shared API budget in Redis; without it, a SQLite file serialises every call.
        os.environ["REDIS_URL"] = args.redis
        os.environ["GATEHOUSE_CLOUDFLARE_BUDGET_NAME"] = f"bench-revoke-{os.getpid()}"
    else:
        os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from django.utils import timezone

    from cloudflare_sim import faults, world
    from dashboard.models import User
    from vendors import services, workflows
    from vendors.models import AccessApplication, WorkflowRun

    sponsor = User.objects.create_user(email="sponsor@example.com", role=User.Role.ADMIN)
    # The seeded SSH bastions keep an app-scoped policy, so no vendor can be granted it: one more web application
    # makes the twelve of the design's scenario.
    from integrations import cloudflare as cf

    employees = next(p for p in cf.access_policies_all() if p.name == "Employees")
    cf.client().zero_trust.access.applications.create(
        account_id=cf.account_id(),
        type="self_hosted",
        name="Status page",
        domain="status.example.com",
        policies=[{"id": employees.id, "precedence": 1}],
    )
    services.access_apps_refresh()
    apps = list(AccessApplication.objects.filter(inline_policies=0))
    assert len(apps) == 12, len(apps)

    def vendor(n: int):
        contacts = [f"person{i}@bench{n}.example.net" for i in range(4)]
        v = services.vendor_create(
            actor=sponsor,
            name=f"Bench vendor {n}",
            sponsor=sponsor,
            contacts=contacts,
            domains=[],
            review_due=date.today() + timedelta(days=90),
            applications=apps,
            ends_at=timezone.now() + timedelta(days=30),
            session_duration="8h",
            service_tokens=3,
            token_duration="8760h",  # noqa: S106 - a lifetime, not a secret
            origin=None,
        )
        run = v.runs.get()
        assert run.status == WorkflowRun.Status.SUCCEEDED, run.reason
        # Every contact signed in: there are sessions to end.
        import random

        rng = random.Random(n)
        by_id = {a["id"]: a for a in sim.store.list("access_app", summary["account_id"])}
        for email in contacts:
            user = world.user_for_email(sim.store, summary["account_id"], email, time.time(), rng)
            for app in apps[:3]:
                world.open_session(sim.store, summary["account_id"], user, by_id[app.cf_id], time.time(), rng)
        return v

    default_threads = workflows._MAX_THREADS

    def revoke(v, threads: int) -> tuple[float, int]:
        workflows._MAX_THREADS = threads
        faults.save(sim.store, {"rules": [{"endpoint": "*", "latency_ms": args.latency_ms}]})
        before = sim.store.stats()["total"]
        started = time.perf_counter()
        run = services.vendor_revoke(actor=sponsor, vendor=v, origin=None)
        elapsed = time.perf_counter() - started
        faults.clear(sim.store)
        run.refresh_from_db()
        assert run.status == WorkflowRun.Status.SUCCEEDED, (run.reason, list(run.steps.values_list("key", "error")))
        steps.append({s.key: (s.finished_at - s.started_at).total_seconds() for s in run.steps.all()})
        return elapsed, sim.store.stats()["total"] - before

    concurrent, sequential, calls, steps = [], [], 0, []
    for i in range(args.repeat):
        elapsed, calls = revoke(vendor(2 * i), threads=default_threads)
        concurrent.append(elapsed)
        elapsed, _ = revoke(vendor(2 * i + 1), threads=1)
        sequential.append(elapsed)
    print(f"revoke: 12 applications, 3 service tokens, 4 contacts, {args.latency_ms:.0f} ms per Cloudflare call")
    print(f"  Cloudflare calls per revocation: {calls}; API budget in {'Redis' if args.redis else 'a SQLite file'}")
    print(
        f"  click -> verified, concurrent calls:   median {statistics.median(concurrent):.3f} s  "
        f"(runs: {', '.join(f'{t:.3f}' for t in concurrent)})"
    )
    print(
        f"  same calls one after another:         median {statistics.median(sequential):.3f} s  "
        f"(runs: {', '.join(f'{t:.3f}' for t in sequential)})"
    )
    print("  target: <= 1 s (DESIGN.md)")
    print("  steps of the last concurrent run (s): " + ", ".join(f"{k} {v:.3f}" for k, v in steps[-2].items()))
    server.terminate()
    server.wait(timeout=10)


if __name__ == "__main__":
    main()
