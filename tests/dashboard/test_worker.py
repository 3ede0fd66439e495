"""Background work as it runs in the demo and in production: real Celery worker and beat processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.db import connection

from dashboard.models import Heartbeat

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _redis_url() -> str:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        if os.environ.get("GATEHOUSE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is required but not reachable at {url}")
        pytest.skip(f"Redis is not reachable at {url}")
    return url


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", ["filesystem", "redis"])
def test_beat_schedules_and_a_worker_runs_the_heartbeat(broker, tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "GATEHOUSE_ENV": "local",
        "GATEHOUSE_VAR_DIR": str(tmp_path),
        "DATABASE_URL": _database_url(),
        "GATEHOUSE_HEARTBEAT_SECONDS": "1",
        "CELERY_BROKER_URL": "filesystem://" if broker == "filesystem" else _redis_url(),
    }
    for folder in ("broker/queue", "broker/processed", "broker/control"):
        (tmp_path / folder).mkdir(parents=True)
    celery = [sys.executable, "-m", "celery", "-A", "dashboard"]
    processes = [
        subprocess.Popen(
            [
                *celery,
                "worker",
                "--concurrency",
                "1",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        ),
        subprocess.Popen(
            [*celery, "beat", "-l", "WARNING", "-s", str(tmp_path / "schedule")],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        ),
    ]
    try:
        deadline = time.monotonic() + 60
        while not Heartbeat.objects.filter(name="worker").exists():
            assert all(p.poll() is None for p in processes), "a Celery process exited early"
            assert time.monotonic() < deadline, "no heartbeat within 60 s"
            time.sleep(0.5)
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=20)
