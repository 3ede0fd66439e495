"""Background work as it runs in the demo and in production: real Celery worker and beat processes."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from dashboard.models import Heartbeat
from tests.workers import CELERY_ON_QUEUE, database_url, redis_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", ["filesystem", "redis"])
def test_beat_schedules_and_a_worker_runs_the_heartbeat(broker, tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "GATEHOUSE_ENV": "local",
        "GATEHOUSE_VAR_DIR": str(tmp_path),
        "DATABASE_URL": database_url(),
        "GATEHOUSE_HEARTBEAT_SECONDS": "1",
        "CELERY_BROKER_URL": "filesystem://" if broker == "filesystem" else redis_url(),
    }
    for folder in ("broker/queue", "broker/processed", "broker/control"):
        (tmp_path / folder).mkdir(parents=True)
    celery = [sys.executable, "-c", CELERY_ON_QUEUE, f"gatehouse-test-heartbeat-{uuid.uuid4().hex}"]
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
