"""Logpush ingest: `manage.py ingest_logpush` over network-session records in S3 (moto's server), next to two
floors measured in the same run on the same objects with the same number of processes:

- stdlib floor: fetch through boto3, `gzip.GzipFile` line by line, `json.loads` each line;
- fast floor: fetch through boto3, gunzip the whole object in C (`zlib`), `orjson.loads` each line.

The ingest does everything the floors do not: validation, aggregation, claims and the database, exactly once.
The fast floor and the ingest run three times each, taking turns, and their medians are compared.
It runs at two sizes (the same object size, more hours of traffic) so that "memory flat" is a measurement:
peak RSS per worker should not grow with the record count.

    .venv/bin/python bench/bench_ingest.py                        # 250,000 and 1,000,000 records, 2 processes
    .venv/bin/python bench/bench_ingest.py --sizes 100000 --processes 1 --repeats 1
    .venv/bin/python bench/bench_ingest.py --postgres postgres://postgres@127.0.0.1:5432

moto runs as its own process and the simulator's writer fills it from another, so neither counts in the
memory figures; each floor and each ingest run in a fresh process whose peak RSS (and its workers') is reported.
Target: ingest within 1.5x of the fast floor, peak RSS per worker independent of the record count.
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
BUCKET = "bench-logpush"
# Records per hour of traffic: 1,000,000 records fill 24 hours, in objects of about 3,500 records.
RECORDS_PER_HOUR = 1_000_000 / 24


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


def _stdlib_object(key: str) -> int:
    import gzip

    from integrations import aws

    body = aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"]
    lines = 0
    for line in gzip.GzipFile(fileobj=body, mode="rb"):
        with contextlib.suppress(ValueError):
            json.loads(line)
        lines += 1
    return lines


def _fast_object(key: str) -> int:
    import zlib

    import orjson

    from integrations import aws

    data = zlib.decompress(aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read(), wbits=31)
    lines = 0
    loads = orjson.loads
    for line in data.split(b"\n"):
        if line:
            with contextlib.suppress(ValueError):
                loads(line)
            lines += 1
    return lines


def phase_floor(kind: str, prefix: str, processes: int) -> dict:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from integrations import aws

    keys = [o.key for page in aws.list_objects(BUCKET, prefix) for o in page]
    aws.forget_clients()
    read = _stdlib_object if kind == "stdlib" else _fast_object
    began = time.perf_counter()
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
        lines = sum(pool.map(read, keys, chunksize=4))
    seconds = time.perf_counter() - began
    me, child = _peak_mb()
    return {"lines": lines, "seconds": seconds, "peak_mb": me, "worker_peak_mb": child}


def phase_ingest(prefix: str, processes: int) -> dict:
    import io

    from django.core.management import call_command
    from django.db.models import Sum

    from discovery.models import IngestRun, Origin, OriginDaily

    call_command("migrate", verbosity=0)
    out = io.StringIO()
    began = time.perf_counter()
    call_command("ingest_logpush", f"s3://{BUCKET}/{prefix}", "--processes", str(processes), stdout=out)
    seconds = time.perf_counter() - began
    me, child = _peak_mb()
    run = IngestRun.objects.get()
    return {
        "lines": run.records,
        "accepted": run.accepted,
        "refused": run.rejected,
        "objects": run.objects_done,
        "origins": Origin.objects.count(),
        "origin_sessions": Origin.objects.aggregate(total=Sum("sessions"))["total"] or 0,
        "daily_rows": OriginDaily.objects.count(),
        "seconds": seconds,
        "peak_mb": me,
        "worker_peak_mb": child,
    }


def _phase(name: str, prefix: str, args, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [PYTHON, __file__, "--phase", name, "--prefix", prefix, "--processes", str(args.processes)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _database(args, env: dict[str, str], workdir: str, size: str) -> None:
    if args.postgres:
        import psycopg

        name = f"gatehouse_bench_ingest_{size}"
        with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        env["DATABASE_URL"] = f"{args.postgres}/{name}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{workdir}/bench-ingest-{size}.sqlite3"


def _median(results: list[dict]) -> dict:
    """The run of median time; its peak RSS is the largest any run reached."""
    ordered = sorted(results, key=lambda r: r["seconds"])
    median = dict(ordered[len(ordered) // 2])
    median["worker_peak_mb"] = max(r["worker_peak_mb"] for r in results)
    median["peak_mb"] = max(r["peak_mb"] for r in results)
    median["all_seconds"] = [round(r["seconds"], 2) for r in results]
    return median


def _rate(result: dict) -> str:
    return (
        f"{result['lines']:,} lines in {result['seconds']:.2f} s = "
        f"{result['lines'] / result['seconds']:,.0f} records/s; "
        f"peak RSS {result['peak_mb']} MB parent, {result['worker_peak_mb']} MB per worker"
        + (f"; runs {result['all_seconds']} s" if len(result.get("all_seconds", [])) > 1 else "")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="fast floor and ingest runs, taking turns")
    parser.add_argument("--postgres", help="e.g. postgres://postgres@127.0.0.1:5432 (default: a fresh SQLite file)")
    parser.add_argument("--phase", choices=["stdlib", "fast", "ingest"], help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        if args.phase == "ingest":
            result = phase_ingest(args.prefix, args.processes)
        else:
            result = phase_floor(args.phase, args.prefix, args.processes)
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
    print(f"bench_ingest: {args.processes} processes on {os.cpu_count()} CPUs; "
          f"database: {'PostgreSQL' if args.postgres else 'SQLite'}")  # fmt: skip
    results = []
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.1)
        for size in args.sizes:
            env = _aws_env(endpoint)
            prefix = f"gateway/network-{size}"
            hours = size / RECORDS_PER_HOUR
            began = time.perf_counter()
            subprocess.run(
                [PYTHON, "-m", "cloudflare_sim", "logpush", "--to", f"s3://{BUCKET}/{prefix}", "--records",
                 str(size), "--hours", f"{hours:.4f}", "--seed", "11"],
                env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            written = time.perf_counter() - began
            env.update(
                GATEHOUSE_ENV="local", DJANGO_SETTINGS_MODULE="dashboard.settings", GATEHOUSE_VAR_DIR=workdir.name
            )
            stdlib = _phase("stdlib", prefix, args, env)
            # The fast floor and the ingest take turns, each ingest on a database of its own, and the medians are
            # compared: a burst of other work on the machine then weighs on both sides alike.
            fasts, ingests = [], []
            for attempt in range(args.repeats):
                fasts.append(_phase("fast", prefix, args, env))
                _database(args, env, workdir.name, f"{size}_{attempt}")
                ingests.append(_phase("ingest", prefix, args, env))
            fast = _median(fasts)
            ingest = _median(ingests)
            ratio = ingest["seconds"] / fast["seconds"]
            results.append((size, ingest))
            print(f"\n{size:,} records over {hours:g} h written to moto S3 in {written:.1f} s")
            print(f"  stdlib floor (boto3 + gzip.GzipFile + json.loads): {_rate(stdlib)}")
            print(f"  fast floor   (boto3 + zlib whole object + orjson): {_rate(fast)}")
            print(f"  ingest       (manage.py ingest_logpush):           {_rate(ingest)}")
            print(
                f"  ingest / fast floor: {ratio:.2f}x (target <= 1.5x); ingest / stdlib floor: "
                f"{ingest['seconds'] / stdlib['seconds']:.2f}x; {ingest['objects']} objects, "
                f"{ingest['accepted']:,} sessions counted, {ingest['refused']:,} refused, {ingest['origins']} origins, "
                f"{ingest['daily_rows']} daily rows"
            )
            # Every counted session must be in some origin's total, whatever the batching and folding did.
            check = "ok" if ingest["origin_sessions"] == ingest["accepted"] else "MISMATCH"
            print(f"  sessions in origins: {ingest['origin_sessions']:,} ({check})")
    finally:
        moto.terminate()
        moto.wait()
        workdir.cleanup()

    if len(results) > 1:
        (small, first), (large, last) = results[0], results[-1]
        print(
            f"\nmemory: peak RSS per ingest worker {first['worker_peak_mb']} MB at {small:,} records, "
            f"{last['worker_peak_mb']} MB at {large:,} ({last['worker_peak_mb'] - first['worker_peak_mb']:+.1f} MB "
            f"for {large / small:g}x the records); target: flat"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
