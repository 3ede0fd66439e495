"""Vendor workflows on real Celery workers (Redis broker) against the simulator, including workers killed mid-run."""

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.utils import timezone

from cloudflare_sim import faults
from dashboard.celery import app as celery_app
from dashboard.models import AuditEntry
from tests.workers import database_url, redis_url, stop_processes
from vendors import services
from vendors.models import Grant, Vendor, WorkflowRun, WorkflowStep

ROOT = Path(__file__).resolve().parents[2]


# A worker on a queue of its own: other test runs on this machine share the Redis database, and their workers must
# not take (and drop) these tasks.
_WORKER = (
    "import sys; from dashboard.celery import app; "
    "app.conf.task_default_queue = sys.argv[1]; app.worker_main(sys.argv[2:])"
)


class Workers:
    """Start, kill and replace Celery worker processes that share the test database and the simulator."""

    def __init__(self, env, queue):
        self.env, self.queue, self.processes = env, queue, []

    def start(self) -> subprocess.Popen:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WORKER,
                self.queue,
                "worker",
                "-P",
                "solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "WARNING",
            ],
            cwd=ROOT,
            env=self.env,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        stop_processes(self.processes)


@pytest.fixture
def workers(cloudflare_sim, transactional_db, settings, tmp_path):
    url = redis_url()
    queue = f"gatehouse-test-vendors-{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "GATEHOUSE_ENV": "local",
        "GATEHOUSE_VAR_DIR": str(tmp_path),
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": url,
        "CLOUDFLARE_BASE_URL": cloudflare_sim.url,
        "CLOUDFLARE_API_TOKEN": settings.CLOUDFLARE_API_TOKEN,
        "CLOUDFLARE_ACCOUNT_ID": cloudflare_sim.account_id,
        "GATEHOUSE_CLOUDFLARE_BUDGET_NAME": settings.GATEHOUSE_CLOUDFLARE_BUDGET_NAME,
        "GATEHOUSE_LEASE_SECONDS": "3",
        "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
    }
    env.pop("CLOUDFLARE_EMAIL", None)
    # This process enqueues onto the same broker instead of running tasks in place.
    saved = (celery_app.conf.task_always_eager, celery_app.conf.broker_url, celery_app.conf.task_default_queue)
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = url
    celery_app.conf.task_default_queue = queue
    _forget_routing()
    pool = Workers(env, queue)
    try:
        yield pool
    finally:
        pool.stop_all()
        faults.clear(cloudflare_sim.store)
        (celery_app.conf.task_always_eager, celery_app.conf.broker_url, celery_app.conf.task_default_queue) = saved
        _forget_routing()
        redis.Redis.from_url(url).delete(queue)


def _forget_routing() -> None:
    """Celery caches its queues and router; they must be rebuilt after the default queue changes."""
    for name in ("queues", "default_queue", "router"):
        celery_app.amqp.__dict__.pop(name, None)
    celery_app.amqp._producer_pool = None
    celery_app._pool = None


def _wait_for(predicate, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        if value := predicate():
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _finished(run: WorkflowRun, timeout: float = 60) -> WorkflowRun:
    def done():
        run.refresh_from_db()
        return run if not run.is_active else None

    try:
        return _wait_for(done, f"{run.get_kind_display()} to finish", timeout)
    except AssertionError:
        raise AssertionError(f"{run.get_kind_display()} still {run.status}: {_steps(run)}") from None


def _steps(run):
    return list(run.steps.values_list("key", "status", "attempts", "error"))


def _admitted_anywhere(sim, vendor) -> list[str]:
    """What the simulator itself says: policies of ours, tokens of ours, sessions of the vendor's contacts."""
    left = [p["name"] for p in sim.store.list("access_policy", sim.account_id) if vendor.owns_policy_name(p["name"])]
    left += [
        t["name"] for t in sim.store.list("service_token", sim.account_id) if t["name"].startswith(vendor.token_prefix)
    ]
    for user in sim.store.list("access_user", sim.account_id):
        if user["email"] in vendor.contacts and sim.store.list("access_session", sim.account_id, parent=user["id"]):
            left.append(user["email"])
    return left


def _sign_in(sim, vendor):
    """Give each contact a live session on their granted applications, as if they had signed in."""
    import random

    from cloudflare_sim import world

    apps = {a["id"]: a for a in sim.store.list("access_app", sim.account_id)}
    rng = random.Random(1)
    for email in vendor.contacts:
        user = world.user_for_email(sim.store, sim.account_id, email, time.time(), rng)
        for grant in vendor.grants.select_related("application"):
            world.open_session(sim.store, sim.account_id, user, apps[grant.application.cf_id], time.time(), rng)


def test_onboarding_expiry_and_revocation_on_a_real_worker(workers, make_vendor, cloudflare_sim):
    workers.start()
    vendor = make_vendor(apps=("PostgreSQL orders", "Redis cache", "Internal API"), tokens=1)
    onboarding = _finished(vendor.runs.get())
    assert onboarding.status == WorkflowRun.Status.SUCCEEDED, _steps(onboarding)

    grant = vendor.grants.get(application__name="Redis cache")
    Grant.objects.filter(pk=grant.pk).update(ends_at=timezone.now() - timedelta(minutes=1))
    assert services.grants_expire()
    expiry = _finished(vendor.runs.get(kind=WorkflowRun.Kind.EXPIRE))
    assert expiry.status == WorkflowRun.Status.SUCCEEDED, _steps(expiry)
    redis_app = next(
        a for a in cloudflare_sim.store.list("access_app", cloudflare_sim.account_id) if a["name"] == "Redis cache"
    )
    assert grant.cf_policy_id not in [r["id"] for r in redis_app["_policy_refs"]]

    _sign_in(cloudflare_sim, vendor)
    revoke = _finished(services.vendor_revoke(actor=None, vendor=vendor, request_origin=None))
    vendor.refresh_from_db()
    assert revoke.status == WorkflowRun.Status.SUCCEEDED, _steps(revoke)
    assert vendor.status == Vendor.Status.REVOKED
    assert _admitted_anywhere(cloudflare_sim, vendor) == []


def test_revoke_finishes_through_5xx_429_and_latency(workers, make_vendor, cloudflare_sim):
    workers.start()
    vendor = make_vendor(tokens=3)
    assert _finished(vendor.runs.get()).status == WorkflowRun.Status.SUCCEEDED
    _sign_in(cloudflare_sim, vendor)
    faults.save(
        cloudflare_sim.store,
        {
            "rules": [{"endpoint": "*", "latency_ms": 150, "error_rate": 0.2, "error_status": 503}],
            "rate_limit": {"limit": 10, "window": 2},
        },
    )
    revoke = _finished(
        services.vendor_revoke(actor=None, vendor=vendor, request_origin=None),
    )
    faults.clear(cloudflare_sim.store)
    stats = cloudflare_sim.stats()
    assert revoke.status == WorkflowRun.Status.SUCCEEDED, (revoke.reason, _steps(revoke))
    assert _admitted_anywhere(cloudflare_sim, vendor) == []
    # The faults really bit: some calls were refused and retried.
    assert stats["by_status"].get("503", 0) > 0
    assert stats["by_status"].get("429", 0) > 0


def test_revoke_completes_and_verifies_after_workers_are_killed_at_several_steps(workers, make_vendor, cloudflare_sim):
    first = workers.start()
    vendor = make_vendor(apps=("PostgreSQL orders", "Redis cache", "Internal API", "Kibana"), tokens=3)
    assert _finished(vendor.runs.get()).status == WorkflowRun.Status.SUCCEEDED
    _sign_in(cloudflare_sim, vendor)
    # Slow calls keep each step in flight long enough to kill the worker inside it.
    faults.save(cloudflare_sim.store, {"rules": [{"endpoint": "*", "latency_ms": 700}]})
    run = services.vendor_revoke(actor=None, vendor=vendor, request_origin=None)
    worker = first
    for position in (2, 3, 4):
        _wait_for(
            lambda p=position: run.steps.filter(position=p, status=WorkflowStep.Status.RUNNING).exists(),
            f"step {position} to start",
        )
        time.sleep(0.3)
        workers.kill(worker)
        worker = workers.start()
    run = _finished(run)
    vendor.refresh_from_db()
    assert run.status == WorkflowRun.Status.SUCCEEDED, (run.reason, _steps(run))
    assert vendor.status == Vendor.Status.REVOKED
    assert [attempts > 1 for _key, _status, attempts, _error in _steps(run)][1:] == [True, True, True]
    faults.clear(cloudflare_sim.store)
    assert _admitted_anywhere(cloudflare_sim, vendor) == []


def test_a_vendor_is_never_marked_revoked_while_another_policy_admits_a_contact(workers, make_vendor, cloudflare_sim):
    from cloudflare_sim import world

    workers.start()
    vendor = make_vendor()
    assert _finished(vendor.runs.get()).status == WorkflowRun.Status.SUCCEEDED
    # Someone else's policy, not Gatehouse's, also lets the contact into Grafana.
    policy = {
        "id": world.new_uuid(),
        "name": "Hand-made exception",
        "decision": "allow",
        "include": [{"email": {"email": vendor.contacts[0]}}],
        "exclude": [],
        "require": [],
        "session_duration": "8h",
        "created_at": world.iso(time.time()),
        "updated_at": world.iso(time.time()),
    }
    cloudflare_sim.store.put("access_policy", policy, cloudflare_sim.account_id)
    grafana = next(
        a for a in cloudflare_sim.store.list("access_app", cloudflare_sim.account_id) if a["name"] == "Grafana"
    )
    grafana["_policy_refs"].append({"id": policy["id"], "precedence": 9})
    cloudflare_sim.store.put("access_app", grafana, cloudflare_sim.account_id)

    revoke = _finished(services.vendor_revoke(actor=None, vendor=vendor, request_origin=None))
    vendor.refresh_from_db()
    assert revoke.status == WorkflowRun.Status.NEEDS_ATTENTION
    assert vendor.status == Vendor.Status.NEEDS_ATTENTION
    assert "Hand-made exception" in revoke.reason
    assert AuditEntry.objects.filter(action="vendor.workflow_needs_attention", target_id=str(vendor.public_id)).exists()
    # Gatehouse did not touch what it does not own.
    assert cloudflare_sim.store.get("access_policy", policy["id"], cloudflare_sim.account_id) is not None


def test_a_step_longer_than_the_lease_stays_with_its_live_worker(workers, make_vendor, cloudflare_sim):
    from vendors.workflows import VendorWorkflows

    workers.start()
    vendor = make_vendor(tokens=1)
    assert _finished(vendor.runs.get()).status == WorkflowRun.Status.SUCCEEDED
    # Every call takes longer than the 3 s lease: only its renewal keeps the step with the worker running it.
    faults.save(cloudflare_sim.store, {"rules": [{"endpoint": "*", "latency_ms": 4000}]})
    run = services.vendor_revoke(actor=None, vendor=vendor, request_origin=None)
    _wait_for(lambda: run.steps.filter(status=WorkflowStep.Status.RUNNING).exists(), "a step to start")
    # A second worker, and a second task for the same run (as a resume pass or a redelivery would send).
    workers.start()
    VendorWorkflows().enqueue(run.pk)
    run = _finished(run, timeout=120)
    faults.clear(cloudflare_sim.store)
    assert run.status == WorkflowRun.Status.SUCCEEDED, (run.reason, _steps(run))
    assert [attempts for _key, _status, attempts, _error in _steps(run)] == [1] * run.steps.count()
