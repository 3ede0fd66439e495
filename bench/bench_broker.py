"""The embedded default's broker, chosen by measurement: each candidate under the same load, side by side.

For each broker: the time from send to receipt of one message at a time (the part of a click a broker costs),
the messages per second two publishers and two consumers move together, what went wrong meanwhile (a consumer
that read a message half-written and stopped, messages lost or delivered twice), and whether a message a
consumer held when it was killed reaches the next consumer.

    .venv/bin/python bench/bench_broker.py [--messages 3000] [--redis redis://127.0.0.1:6379/15]

Candidates: kombu's own filesystem transport (the embedded default until now), Gatehouse's (dashboard/broker.py),
kombu's SQLAlchemy transport on a SQLite file (only when SQLAlchemy is installed: `pip install sqlalchemy`), and
Redis (only with --redis, for comparison: it needs a server).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def connection(spec: dict):
    from kombu import Connection

    conn = Connection(spec["url"], transport=spec.get("transport"), transport_options=spec.get("options", {}))
    if "polling_interval" in spec:
        # The SQLAlchemy transport hands its options to create_engine, which refuses this one.
        conn.transport.polling_interval = spec["polling_interval"]
    return conn


def candidates(work: Path, redis: str | None) -> dict[str, dict]:
    def folders(name: str, ours: bool) -> dict:
        root = work / name
        for folder in ("queue", "control"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        options = {
            "data_folder_in": str(root / "queue"),
            "data_folder_out": str(root / "queue"),
            "control_folder": str(root / "control"),
            "polling_interval": 0.1,
        }
        if ours:
            options |= {"claimed_folder": str(root / "claimed"), "rejected_folder": str(root / "rejected")}
        return options

    found = {
        "kombu filesystem": {
            "url": "filesystem://",
            "transport": "kombu.transport.filesystem:Transport",
            "options": folders("kombu", ours=False),
        },
        "gatehouse filesystem": {
            "url": "filesystem://",
            "transport": "dashboard.broker:Transport",
            "options": folders("gatehouse", ours=True),
        },
    }
    try:
        import sqlalchemy  # noqa: F401

        found["kombu sqlalchemy (SQLite)"] = {
            "url": f"sqla+sqlite:///{work / 'broker.sqlite3'}",
            "polling_interval": 0.1,
        }
    except ImportError:
        print("kombu sqlalchemy (SQLite): skipped, SQLAlchemy is not installed (pip install sqlalchemy)")
    if redis:
        found["redis"] = {"url": redis, "options": {}}
    return found


# --- what each process of the benchmark does --------------------------------------------------------------------


def role_publish(spec: dict, queue: str, who: str, count: int) -> None:
    with connection(spec) as conn:
        q = conn.SimpleQueue(queue)
        for n in range(count):
            q.put({"who": who, "n": n, "sent": time.time(), "pad": "x" * 1500})


def role_consume(spec: dict, queue: str, seconds: float, hang: bool) -> None:
    seen, errors, last = [], [], 0.0
    with connection(spec) as conn:
        q = conn.SimpleQueue(queue)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                message = q.get(timeout=0.5)
            except q.Empty:
                continue
            except Exception as exc:  # what kombu's filesystem transport raises on a half-written file
                errors.append(type(exc).__name__)
                break
            if hang:
                print(json.dumps({"held": message.payload["n"]}), flush=True)
                time.sleep(3600)
            seen.append(f"{message.payload['who']}:{message.payload['n']}")
            message.ack()
            last = time.time()
    print(json.dumps({"seen": seen, "errors": errors, "last": last}), flush=True)


# --- the measurements ---------------------------------------------------------------------------------------------


def spawn(spec: dict, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--role", json.dumps(spec), *args],
        cwd=ROOT,
        text=True,
        start_new_session=True,
        **kwargs,
    )


def latency(spec: dict, count: int = 200) -> list[float]:
    """Send one message, wait for it, again: seconds from send to receipt."""
    times = []
    with connection(spec) as conn:
        q = conn.SimpleQueue(f"latency-{uuid.uuid4().hex[:8]}")
        for n in range(count):
            sent = time.perf_counter()
            q.put({"n": n})
            message = q.get(timeout=10)
            times.append(time.perf_counter() - sent)
            message.ack()
    return times


def together(spec: dict, messages: int) -> dict:
    """Two publishers and two consumers at once; every message should arrive exactly once."""
    queue = f"together-{uuid.uuid4().hex[:8]}"
    seconds = max(20.0, messages / 150)
    consumers = [spawn(spec, "consume", queue, str(seconds), stdout=subprocess.PIPE) for _ in range(2)]
    time.sleep(1.0)
    began = time.time()
    publishers = [spawn(spec, "publish", queue, f"p{i}", str(messages // 2)) for i in range(2)]
    for p in publishers:
        p.wait(timeout=300)
    seen, errors, last = [], [], 0.0
    for c in consumers:
        out, _ = c.communicate(timeout=seconds + 60)
        result = json.loads(out.strip().splitlines()[-1])
        seen += result["seen"]
        errors += result["errors"]
        last = max(last, result["last"])
    expected = {f"p{i}:{n}" for i in range(2) for n in range(messages // 2)}
    return {
        "received": len(seen),
        "lost": len(expected - set(seen)),
        "twice": len(seen) - len(set(seen)),
        "consumers_stopped": len(errors),
        "errors": sorted(set(errors)),
        "seconds": max(last - began, 1e-3),
    }


def kill_holding(spec: dict) -> bool:
    """A consumer takes a message and is killed before acking it: does the next consumer get it?"""
    queue = f"kill-{uuid.uuid4().hex[:8]}"
    with connection(spec) as conn:
        conn.SimpleQueue(queue).put({"who": "k", "n": 1})
    hanging = spawn(spec, "consume", queue, "30", "hang", stdout=subprocess.PIPE)
    hanging.stdout.readline()
    os.killpg(hanging.pid, signal.SIGKILL)
    hanging.wait()
    with connection(spec) as conn:
        q = conn.SimpleQueue(queue)
        try:
            message = q.get(timeout=5)
        except q.Empty:
            return False
        message.ack()
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--role", default=None, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.role:
        spec = json.loads(args.role)
        if rest[0] == "publish":
            role_publish(spec, rest[1], rest[2], int(rest[3]))
        else:
            role_consume(spec, rest[1], float(rest[2]), hang=rest[3:] == ["hang"])
        return
    with tempfile.TemporaryDirectory(prefix="gatehouse-bench-broker-") as work:
        print(f"{args.messages} messages, two publishers and two consumers; one message at a time for latency\n")
        columns = ("p50 ms", "p95 ms", "msg/s", "lost", "twice", "crashed")
        header = f"{'broker':<28} " + " ".join(f"{c:>7}" for c in columns) + "  kill"
        print(header)
        print("-" * len(header))
        for name, spec in candidates(Path(work), args.redis).items():
            times = sorted(latency(spec))
            run = together(spec, args.messages)
            kept = kill_holding(spec)
            p95 = times[int(len(times) * 0.95) - 1]
            print(
                f"{name:<28} {statistics.median(times) * 1000:>7.1f} {p95 * 1000:>7.1f} "
                f"{run['received'] / run['seconds']:>7.0f} {run['lost']:>7} {run['twice']:>7} "
                f"{run['consumers_stopped']:>7}  {'redelivered' if kept else 'LOST'}"
                + (f"  ({', '.join(run['errors'])})" if run["errors"] else "")
            )


if __name__ == "__main__":
    main()
