"""Every scheduled task, sent by a real Celery beat and run by a real worker on the embedded broker, as `make demo`
runs them: each one's row is checked to end (succeeded, or failed with a reason), not only its code path."""

import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from dashboard.celery import app as celery_app
from dashboard.models import AuditEntry, Heartbeat
from discovery.models import AccessPolicy, IngestRun, InventoryRun
from tests.discovery.conftest import logpush, moto, moto_endpoint, s3  # noqa: F401 - AWS as moto's server
from tests.vendors.conftest import access_apps, make_vendor  # noqa: F401 - vendors onboarded on the simulator
from tests.workers import database_url, stop_processes
from tunnels.models import SyncPass
from vendors import services
from vendors.models import AccessApplication, Grant, Vendor, WorkflowRun

ROOT = Path(__file__).resolve().parents[1]
# Every entry of the real beat schedule, each due this often, so that one test sees them all run.
EVERY_SECONDS = 3
CELERY_FAST_BEAT = (
    "import sys; from dashboard.celery import app\n"
    "for entry in app.conf.beat_schedule.values(): entry['schedule'] = float(sys.argv[1])\n"
    "app.start(sys.argv[2:])"
)


@pytest.fixture
def stack(cloudflare_sim, moto, transactional_db, tmp_path):  # noqa: F811
    """A worker (prefork, two processes) and beat, on the embedded broker under tmp_path; stopped afterwards."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "GATEHOUSE_ENV": "local",
        "GATEHOUSE_VAR_DIR": str(tmp_path),
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": "filesystem://",
        "REDIS_URL": "",
        "CLOUDFLARE_BASE_URL": cloudflare_sim.url,
        "CLOUDFLARE_API_TOKEN": settings.CLOUDFLARE_API_TOKEN,
        "CLOUDFLARE_ACCOUNT_ID": cloudflare_sim.account_id,
        "GATEHOUSE_CLOUDFLARE_BUDGET_NAME": settings.GATEHOUSE_CLOUDFLARE_BUDGET_NAME,
        "GATEHOUSE_LOGPUSH_URL": settings.GATEHOUSE_LOGPUSH_URL,
        "GATEHOUSE_AWS_REGIONS": "us-east-1",
        "AWS_ENDPOINT_URL": settings.AWS_ENDPOINT_URL,
        "GATEHOUSE_HEARTBEAT_SECONDS": str(EVERY_SECONDS),
        "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    }
    env.pop("CLOUDFLARE_EMAIL", None)
    celery = [sys.executable, "-c", CELERY_FAST_BEAT, str(EVERY_SECONDS)]
    logs = {name: (tmp_path / f"{name}.log").open("w+") for name in ("worker", "beat")}
    processes = [
        subprocess.Popen(
            [*celery, "worker", "--concurrency", "2", "--without-gossip", "--without-mingle", "-l", "INFO"],
            cwd=ROOT,
            env=env,
            stdout=logs["worker"],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
        subprocess.Popen(
            [*celery, "beat", "-l", "INFO", "-s", str(tmp_path / "schedule")],
            cwd=ROOT,
            env=env,
            stdout=logs["beat"],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
    ]
    try:
        yield processes, {name: tmp_path / f"{name}.log" for name in logs}
    finally:
        stop_processes(processes)
        for log in logs.values():
            log.close()


def _lost_revoke(vendor: Vendor) -> WorkflowRun:
    """A revoke whose task never reached a worker (sent to a broker in this process's memory, then gone)."""
    saved = celery_app.conf.task_always_eager, celery_app.conf.broker_url
    celery_app.conf.task_always_eager, celery_app.conf.broker_url = False, "memory://"
    celery_app._pool = None
    try:
        return services.vendor_revoke(actor=None, vendor=vendor, request_origin=None)
    finally:
        celery_app.conf.task_always_eager, celery_app.conf.broker_url = saved
        celery_app._pool = None


def test_every_scheduled_task_runs_on_a_real_worker_and_beat_and_its_row_ends(
    stack, make_vendor, logpush, cloudflare_sim  # noqa: F811
):
    logpush(records=600, hours=1)
    AccessPolicy.objects.all().delete()
    expiring = make_vendor(name="Expiring Ltd")
    overdue = make_vendor(name="Overdue Ltd")
    lost = make_vendor(name="Lost Task Ltd")
    grant = expiring.grants.first()
    Grant.objects.filter(pk=grant.pk).update(ends_at=timezone.now() - timedelta(minutes=1))
    Vendor.objects.filter(pk=overdue.pk).update(review_due=date.today() - timedelta(days=1))
    revoke = _lost_revoke(lost)
    started = timezone.now()

    processes, logs = stack
    checks = {
        "heartbeat": lambda: Heartbeat.objects.filter(name="worker", seen_at__gte=started).exists(),
        "sync": lambda: SyncPass.objects.filter(finished_at__isnull=False, complete=True, error="").exists(),
        "logpush": lambda: IngestRun.objects.filter(
            finished_at__isnull=False, error="", listed__gt=0, objects_done__gt=0
        ).exists(),
        "inventory": lambda: InventoryRun.objects.filter(finished_at__isnull=False, error="").exists(),
        "expiry": lambda: expiring.runs.filter(
            kind=WorkflowRun.Kind.EXPIRE, status=WorkflowRun.Status.SUCCEEDED
        ).exists(),
        "recertify": lambda: AuditEntry.objects.filter(
            action="vendor.review_overdue", target_id=str(overdue.public_id)
        ).exists(),
        "drift": lambda: Vendor.objects.filter(drift_checked_at__gte=started).exists(),
        "access applications": lambda: AccessApplication.objects.filter(synced_at__gte=started).exists(),
        "access policies": lambda: AccessPolicy.objects.exists(),
        "resume": lambda: WorkflowRun.objects.filter(pk=revoke.pk, status=WorkflowRun.Status.SUCCEEDED).exists(),
    }
    pending = dict(checks)
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        assert all(p.poll() is None for p in processes), logs["worker"].read_text()[-3000:]
        for name, check in list(pending.items()):
            if check():
                del pending[name]
        time.sleep(0.5)
    worker_log = logs["worker"].read_text()
    assert not pending, f"never ended: {sorted(pending)}\n{worker_log[-3000:]}"
    # Every pass that started has ended, and nothing a task raised went unnoticed.
    for model in (SyncPass, IngestRun, InventoryRun):
        before = timezone.now() - timedelta(seconds=30)
        assert not model.objects.filter(finished_at__isnull=True, started_at__lt=before).exists(), model.__name__
    failed = IngestRun.objects.exclude(error="").values_list("error", flat=True)
    assert list(failed) == []
    assert "raised unexpected" not in worker_log, worker_log[-3000:]
    assert "Unrecoverable error" not in worker_log


@pytest.mark.parametrize(
    "task_path", ["vendors.tasks.access_apps_refresh", "discovery.tasks.access_policies_refresh_task"]
)
def test_a_scheduled_read_that_finds_the_budget_spent_gives_way_after_its_retries(
    db, cloudflare_sim, settings, caplog, task_path
):
    from django.utils.module_loading import import_string

    from integrations import cloudflare as cf

    settings.CLOUDFLARE_RATE_LIMIT = 4  # a share of one call per window
    while cf.budget().take(cf.Priority.STATUS).granted:
        pass
    result = import_string(task_path).apply()
    # Beat's schedule reads again: a spent budget is not a task that failed.
    assert result.successful(), result.traceback
    assert "the next scheduled pass reads again" in caplog.text
