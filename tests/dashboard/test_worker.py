"""Background work as it runs in the demo and in production: real Celery worker and beat processes."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from dashboard.models import Heartbeat
from tests.workers import CELERY_ON_QUEUE, database_url, redis_url, stop_processes

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
        stop_processes(processes)



@pytest.mark.django_db(transaction=True)
def test_a_worker_waits_out_an_embedded_broker_that_is_down_and_goes_on_after(tmp_path):
    from celery import Celery

    from tests.dashboard.test_broker import options

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "GATEHOUSE_ENV": "local",
        "GATEHOUSE_VAR_DIR": str(tmp_path),
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": "filesystem://",
        "REDIS_URL": "",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "-c", "1", "--without-gossip", "-l", "WARNING"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    queue = tmp_path / "broker" / "queue"
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "broker" / "claimed").exists():
            assert time.monotonic() < deadline, "the worker never opened the broker"
            time.sleep(0.2)
        time.sleep(2)
        # The broker's folder becomes unusable for a while (as a full disk or a lost mount would make it).
        queue.rename(tmp_path / "broker" / "queue-away")
        queue.write_text("")
        time.sleep(3)
        assert worker.poll() is None, "the worker stopped while the broker was down"
        queue.unlink()
        (tmp_path / "broker" / "queue-away").rename(queue)
        sender = Celery(broker="filesystem://", set_as_current=False)  # the suite goes on with Gatehouse's app
        sender.conf.broker_transport = "dashboard.broker:Transport"
        sender.conf.broker_transport_options = options(tmp_path / "broker")
        sender.send_task("dashboard.tasks.record_heartbeat")
        deadline = time.monotonic() + 30
        while not Heartbeat.objects.filter(name="worker").exists():
            assert worker.poll() is None, "the worker stopped"
            assert time.monotonic() < deadline, "the worker did not take a task once the broker was back"
            time.sleep(0.3)
    finally:
        stop_processes([worker])
