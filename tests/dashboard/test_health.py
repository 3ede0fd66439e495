"""/healthz, /readyz and /metrics: answered before sign-in, the Host check and the HTTPS redirect."""

import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import Alert, Channel, Delivery
from dashboard.models import Heartbeat
from integrations.cloudflare import budget


@pytest.fixture(autouse=True)
def own_budget(settings, tmp_path):
    """A budget of this test's own, so another test's 429 cannot make this one not ready."""
    settings.VAR_DIR = tmp_path
    settings.REDIS_URL = ""
    settings.GATEHOUSE_CLOUDFLARE_BUDGET_NAME = f"health-{uuid.uuid4().hex}"


# The checks run in threads of their own, on connections of their own: what a test writes must be committed for
# them to see it (transactional_db, not db).
@pytest.fixture
def fresh_heartbeat(transactional_db):
    Heartbeat.objects.create(name="worker", seen_at=timezone.now())


def test_healthz_answers_without_sign_in_or_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


def test_probes_answer_any_host_and_plain_http_in_production(client, settings):
    settings.ALLOWED_HOSTS = ["gatehouse.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz", HTTP_HOST="10.0.0.5:8000").status_code == 200


def test_probes_refuse_other_methods(client):
    assert client.post("/healthz").status_code == 405
    assert client.post("/readyz").status_code == 405


def test_readyz_is_ready_with_database_broker_fresh_heartbeat_and_open_budget(client, fresh_heartbeat):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    checks = response.json()["checks"]
    assert set(checks) == {"database", "broker", "heartbeat", "cloudflare_budget"}
    assert all(c["ok"] for c in checks.values())


def test_readyz_is_not_ready_without_a_heartbeat(client, transactional_db):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["heartbeat"] == {"ok": False, "detail": "no heartbeat yet"}


def test_readyz_is_not_ready_with_a_stale_heartbeat(client, transactional_db, settings):
    settings.GATEHOUSE_HEARTBEAT_SECONDS = 30
    Heartbeat.objects.create(name="worker", seen_at=timezone.now() - timedelta(seconds=100))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["heartbeat"]["detail"] == "last heartbeat 100 s ago"


def test_readyz_is_not_ready_when_the_broker_is_unreachable_and_does_not_show_its_url(
    client, fresh_heartbeat, settings
):
    settings.CELERY_BROKER_URL = "redis://:s3cret@127.0.0.1:1/0"
    settings.CELERY_BROKER_TRANSPORT = None  # settings name a transport only for the embedded default
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False
    assert "s3cret" not in response.content.decode()


def test_readyz_is_not_ready_while_cloudflare_has_blocked_the_budget(client, fresh_heartbeat):
    budget().block(120)
    response = client.get("/readyz")
    assert response.status_code == 503
    detail = response.json()["checks"]["cloudflare_budget"]["detail"]
    assert re.fullmatch(r"blocked for 1[12]\d s after a 429", detail)


# --- /metrics -----------------------------------------------------------------------------------------------


def _metrics(client, **headers):
    return client.get("/metrics", **headers)


def _value(body: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", body, re.MULTILINE)
    assert match, f"{series} not in the scrape"
    return float(match.group(1))


def test_metrics_from_an_outside_address_without_a_token_is_refused(client, db):
    assert _metrics(client, REMOTE_ADDR="203.0.113.9").status_code == 403


def test_metrics_with_a_token_needs_exactly_that_token(client, db, settings):
    settings.GATEHOUSE_METRICS_TOKEN = "scrape-token-0123456789"
    assert _metrics(client).status_code == 403  # loopback alone is not enough once a token is set
    assert _metrics(client, HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    response = _metrics(client, HTTP_AUTHORIZATION="Bearer scrape-token-0123456789", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 200


def test_metrics_name_every_figure_operators_alert_on(client, db):
    Heartbeat.objects.create(name="worker", seen_at=timezone.now() - timedelta(seconds=12))
    channel = Channel.objects.create(name="c", kind="email", target="a@example.com")
    alert = Alert.objects.create(kind="k", subject="s")
    Delivery.objects.create(alert=alert, channel=channel, event="raised", state="failed")
    Delivery.objects.create(alert=alert, channel=channel, event="resolved", state="sent")
    spend = budget()
    spend.block(30)
    response = _metrics(client)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    body = response.content.decode()
    assert _value(body, "gatehouse_cloudflare_api_calls_used") == 0
    assert _value(body, "gatehouse_cloudflare_api_calls_left") == spend.limits.share
    assert _value(body, "gatehouse_cloudflare_rate_limited_total") == 1
    assert 25 < _value(body, "gatehouse_cloudflare_blocked_seconds") <= 30
    assert _value(body, 'gatehouse_alert_deliveries{state="failed"}') == 1
    assert _value(body, 'gatehouse_alert_deliveries{state="sent"}') == 1
    assert _value(body, "gatehouse_alerts_open") == 1
    assert 11 < _value(body, 'gatehouse_heartbeat_age_seconds{name="worker"}') < 30
    for name in (
        "gatehouse_tunnel_sync_duration_seconds",
        "gatehouse_tunnel_sync_data_age_seconds",
        "gatehouse_logpush_lag_seconds",
        "gatehouse_logpush_records_per_second",
        "gatehouse_workflow_runs",
        "gatehouse_workflow_run_duration_seconds",
    ):
        assert f"# TYPE {name} " in body


def test_metrics_read_sync_logpush_and_workflow_figures_from_the_database(client, db):
    from discovery.models import IngestRun, Origin
    from tests.factories import make_user
    from tunnels.models import SyncPass
    from vendors.models import Vendor, WorkflowRun

    now = timezone.now()
    SyncPass.objects.create(
        started_at=now - timedelta(seconds=70), finished_at=now - timedelta(seconds=60), complete=True, api_calls=7
    )
    IngestRun.objects.create(
        source="s3://b/p",
        started_at=now - timedelta(seconds=50),
        finished_at=now - timedelta(seconds=40),
        records=5000,
        seconds=2.0,
    )
    Origin.objects.create(address="10.0.0.1", port=22, protocol="tcp", last_seen=now - timedelta(seconds=300))
    vendor = Vendor.objects.create(name="Acme", sponsor=make_user(), review_due=now.date())
    for seconds, status in ((10, "succeeded"), (30, "succeeded"), (5, "failed")):
        WorkflowRun.objects.create(
            vendor=vendor, kind="onboard", status=status, started_at=now, finished_at=now + timedelta(seconds=seconds)
        )
    WorkflowRun.objects.create(vendor=vendor, kind="revoke", status="running", started_at=now)
    body = _metrics(client).content.decode()
    assert _value(body, "gatehouse_tunnel_sync_duration_seconds") == 10
    assert 59 < _value(body, "gatehouse_tunnel_sync_data_age_seconds") < 70
    assert _value(body, "gatehouse_tunnel_sync_api_calls") == 7
    assert 299 < _value(body, "gatehouse_logpush_lag_seconds") < 310
    assert _value(body, "gatehouse_logpush_records_per_second") == 2500
    assert _value(body, 'gatehouse_workflow_runs{kind="onboard",status="succeeded"}') == 2
    assert _value(body, 'gatehouse_workflow_runs{kind="revoke",status="running"}') == 1
    assert _value(body, 'gatehouse_workflow_run_duration_seconds_count{kind="onboard",status="succeeded"}') == 2
    assert _value(body, 'gatehouse_workflow_run_duration_seconds_sum{kind="onboard",status="succeeded"}') == 40


def test_health_command_exits_non_zero_on_a_stale_heartbeat_and_zero_when_fresh(transactional_db, capsys):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not ready: heartbeat"):
        call_command("health", "--check", "heartbeat")
    Heartbeat.objects.create(name="worker", seen_at=timezone.now())
    call_command("health", "--check", "heartbeat", "--check", "database")
    assert '"heartbeat": {"ok": true' in capsys.readouterr().out


def test_redis_budget_counts_429s_and_says_how_long_it_is_blocked(settings):
    from tests.workers import redis_url

    settings.REDIS_URL = redis_url()
    spend = budget()
    assert (spend.blocked_for(), spend.rate_limited()) == (0.0, 0)
    spend.block(30)
    spend.block(10)  # a shorter block does not shorten the longer one, and counts as one more 429
    assert 25 < spend.blocked_for() <= 30
    assert spend.rate_limited() == 2
    spend.redis.delete(spend.key, spend.blocked_key, f"{spend.key}:rate-limited")


def test_metrics_ignore_a_forwarded_loopback_address_from_a_client_that_is_not_the_proxy(client, db, settings):
    settings.GATEHOUSE_TRUSTED_PROXY_COUNT = 1
    settings.GATEHOUSE_TRUSTED_PROXIES = ["127.0.0.0/8", "::1/128"]
    spoofed = _metrics(client, REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert spoofed.status_code == 403, "a client's own X-Forwarded-For opened /metrics"


def test_metrics_go_by_the_address_the_trusted_proxy_reports(client, db, settings):
    settings.GATEHOUSE_TRUSTED_PROXY_COUNT = 1
    settings.GATEHOUSE_TRUSTED_PROXIES = ["10.0.0.5/32"]
    outside = _metrics(client, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="127.0.0.1, 203.0.113.9")
    assert outside.status_code == 403
    assert _metrics(client, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 200
# --- a dependency that accepts connections and never answers ---------------------------------------------------

# The bound /readyz keeps (two seconds) and a margin for a machine shared with other test runs.
READY_BOUND = 3.0


def _timed_get(client, path):
    import time

    started = time.monotonic()
    response = client.get(path)
    return response, time.monotonic() - started


def test_readyz_answers_within_the_bound_and_names_a_broker_that_never_answers(
    client, fresh_heartbeat, settings, silent_port
):
    settings.CELERY_BROKER_URL = f"redis://:s3cret@127.0.0.1:{silent_port}/0"
    settings.CELERY_BROKER_TRANSPORT = None  # settings name a transport only for the embedded default
    response, took = _timed_get(client, "/readyz")
    assert took < READY_BOUND
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["broker"]["ok"] is False
    assert checks["database"]["ok"] is True
    assert "s3cret" not in response.content.decode()


def test_readyz_answers_within_the_bound_and_names_a_budget_store_that_never_answers(
    client, fresh_heartbeat, settings, silent_port
):
    settings.REDIS_URL = f"redis://:s3cret@127.0.0.1:{silent_port}/0"
    response, took = _timed_get(client, "/readyz")
    assert took < READY_BOUND
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["cloudflare_budget"]["ok"] is False
    assert checks["broker"]["ok"] is True
    assert "s3cret" not in response.content.decode()


def test_health_command_answers_within_the_bound_when_the_database_never_answers(silent_port, tmp_path):
    """`manage.py health` in a process of its own, its database a PostgreSQL address that accepts and is silent."""
    import json
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    env = {
        **os.environ,
        "GATEHOUSE_ENV": "local",
        "GATEHOUSE_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"postgres://gatehouse:s3cret@127.0.0.1:{silent_port}/gatehouse",
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
    }
    manage = Path(__file__).resolve().parents[2] / "manage.py"
    # Starting Python and Django is not the check's time: the command prints when it starts checking.
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(manage), "health", "--check", "database", "--check", "heartbeat"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr[-2000:]
    checks = json.loads(result.stdout)
    assert checks["database"]["ok"] is False and checks["heartbeat"]["ok"] is False
    # libpq's own connect timeout (two seconds, its least) and the deadline end the wait at about the same time.
    assert checks["database"]["detail"] in ("no answer within 1.5 s", "unreachable (OperationalError)")
    assert "s3cret" not in result.stdout + result.stderr
    assert took < 15  # interpreter and Django start included; without the bound it waits for good


def test_healthz_waits_on_no_dependency(client, db, settings, silent_port, django_assert_num_queries):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{silent_port}/0"
    settings.REDIS_URL = f"redis://127.0.0.1:{silent_port}/0"
    with django_assert_num_queries(0):
        response, took = _timed_get(client, "/healthz")
    assert response.status_code == 200 and took < 0.5
