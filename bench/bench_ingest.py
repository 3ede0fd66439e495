"""Logpush ingest: 1,000,000 network-session records from S3 (moto's server), records per second and peak memory,
next to a floor measured in the same run: the same objects only fetched, decompressed and parsed as JSON.

    .venv/bin/python bench/bench_ingest.py                        # 1,000,000 records, 2 processes, SQLite
    .venv/bin/python bench/bench_ingest.py --records 250000 --processes 1
    .venv/bin/python bench/bench_ingest.py --postgres postgres://postgres@127.0.0.1:5432

moto runs as its own process and the simulator's writer fills it from another, so neither counts in the
memory figures; the floor and the ingest each run in a fresh process whose peak RSS (and its workers') is reported.
Target (DESIGN.md): 1,000,000 records in <= 8 s on 2 cores, memory flat (streamed).
"""

import argparse
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BUCKET, PREFIX = "bench-logpush", "gateway/network"


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _aws_env(endpoint: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 -- moto accepts any
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
    )
    return env


def _peak_mb() -> tuple[float, float]:
    """Peak RSS of this process and of its largest finished child, in MB (Linux reports KiB)."""
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return round(me, 1), round(children, 1)


def _floor_object(key: str) -> int:
    import gzip

    from integrations import aws

    body = aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"]
    lines = 0
    # The same parser the ingest uses (UTF-8 decode, then the C scanner), so the gap between the two is validation,
    # aggregation and the database.
    parse = json.JSONDecoder().raw_decode
    for line in gzip.GzipFile(fileobj=body, mode="rb"):
        with contextlib.suppress(ValueError):
            parse(line.rstrip(b"\n").decode())
        lines += 1
    return lines


def phase_floor(processes: int) -> dict:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from integrations import aws

    keys = [o.key for page in aws.list_objects(BUCKET, PREFIX) for o in page]
    aws.forget_clients()
    began = time.perf_counter()
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
        lines = sum(pool.map(_floor_object, keys))
    seconds = time.perf_counter() - began
    me, child = _peak_mb()
    return {"lines": lines, "seconds": seconds, "peak_mb": me, "worker_peak_mb": child}


def phase_ingest(processes: int) -> dict:
    from django.core.management import call_command

    from discovery import services
    from discovery.models import Origin, OriginDaily

    call_command("migrate", verbosity=0)
    began = time.perf_counter()
    run = services.logpush_ingest(url=f"s3://{BUCKET}/{PREFIX}", processes=processes)
    seconds = time.perf_counter() - began
    me, child = _peak_mb()
    return {
        "lines": run.records,
        "accepted": run.accepted,
        "refused": run.rejected,
        "objects": run.objects_done,
        "origins": Origin.objects.count(),
        "daily_rows": OriginDaily.objects.count(),
        "seconds": seconds,
        "peak_mb": me,
        "worker_peak_mb": child,
    }


def _phase(name: str, args, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [PYTHON, __file__, "--phase", name, "--processes", str(args.processes)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--hours", type=float, default=24)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--postgres", help="e.g. postgres://postgres@127.0.0.1:5432 (default: a fresh SQLite file)")
    parser.add_argument("--phase", choices=["floor", "ingest"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        result = phase_floor(args.processes) if args.phase == "floor" else phase_ingest(args.processes)
        print(json.dumps(result))
        return 0

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = subprocess.Popen(
        [str(Path(PYTHON).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workdir = tempfile.TemporaryDirectory(prefix="bench-ingest-")
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.1)
        env = _aws_env(endpoint)
        began = time.perf_counter()
        subprocess.run(
            [PYTHON, "-m", "cloudflare_sim", "logpush", "--to", f"s3://{BUCKET}/{PREFIX}", "--records",
             str(args.records), "--hours", str(args.hours), "--seed", "11"],
            env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        written = time.perf_counter() - began

        env.update(GATEHOUSE_ENV="local", DJANGO_SETTINGS_MODULE="dashboard.settings", GATEHOUSE_VAR_DIR=workdir.name)
        if args.postgres:
            import psycopg

            with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS gatehouse_bench_ingest")
                conn.execute("CREATE DATABASE gatehouse_bench_ingest")
            env["DATABASE_URL"] = f"{args.postgres}/gatehouse_bench_ingest"
        else:
            env["DATABASE_URL"] = f"sqlite:///{workdir.name}/bench-ingest.sqlite3"
        floor = _phase("floor", args, env)
        ingest = _phase("ingest", args, env)
    finally:
        moto.terminate()
        moto.wait()
        workdir.cleanup()

    database = "PostgreSQL" if args.postgres else "SQLite"
    print(f"bench_ingest: {args.records:,} records over {args.hours:g} h written to moto S3 in {written:.1f} s")
    print(f"  processes: {args.processes} on {os.cpu_count()} CPUs; database: {database}")
    print(
        f"  floor  (fetch + gunzip + json.loads only): {floor['lines']:,} lines in {floor['seconds']:.2f} s = "
        f"{floor['lines'] / floor['seconds']:,.0f} records/s; peak RSS {floor['peak_mb']} MB parent, "
        f"{floor['worker_peak_mb']} MB per worker"
    )
    print(
        f"  ingest (validate, aggregate, apply exactly once): {ingest['lines']:,} lines in {ingest['seconds']:.2f} s = "
        f"{ingest['lines'] / ingest['seconds']:,.0f} records/s; peak RSS {ingest['peak_mb']} MB parent, "
        f"{ingest['worker_peak_mb']} MB per worker"
    )
    print(
        f"  ingest / floor time: {ingest['seconds'] / floor['seconds']:.2f}x; {ingest['objects']} objects, "
        f"{ingest['accepted']:,} sessions counted, {ingest['refused']:,} refused, {ingest['origins']} origins, "
        f"{ingest['daily_rows']} daily rows"
    )
    print("  target: 1,000,000 records in <= 8 s on 2 cores, memory flat")
    return 0


if __name__ == "__main__":
    sys.exit(main())
