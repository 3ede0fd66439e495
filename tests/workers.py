"""What tests that start real Celery processes share: where the test database and Redis are, and a queue each."""

import contextlib
import os
import signal
import subprocess

import pytest
import redis
from django.db import connection


def database_url() -> str:
    """The test database, as a URL a worker process can be given."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def redis_url() -> str:
    """Redis for the broker; the test is skipped without one, or fails where CI demands it."""
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        if os.environ.get("GATEHOUSE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"Redis is required but not reachable at {url}")
        pytest.skip(f"Redis is not reachable at {url}")
    return url


# `python -c CELERY_ON_QUEUE <queue> worker|beat ...`: Celery on a queue of its own. Other test runs on this machine
# share the Redis database, and their workers must not take (and drop) this test's tasks.
CELERY_ON_QUEUE = (
    "import sys; from dashboard.celery import app; app.conf.task_default_queue = sys.argv[1]; app.start(sys.argv[2:])"
)


def stop_processes(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to each process's group, then SIGKILL to any still there after 20 s, and to whatever each left in its
    group (a prefork pool): no process outlives its test."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
