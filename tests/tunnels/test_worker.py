"""The sync and the alerts it raises, run by real Celery worker and beat processes on Redis."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from alerts.models import Alert, Channel, Delivery
from cloudflare_sim import control
from tests.alerts.test_services import Receiver
from tests.workers import CELERY_ON_QUEUE, database_url, redis_url, stop_processes
from tunnels.models import Tunnel

ROOT = Path(__file__).resolve().parents[2]


def _wait(condition, what: str, processes, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert all(p.poll() is None for p in processes), "a Celery process exited early"
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds:.0f} s"
        time.sleep(0.3)


@pytest.mark.django_db(transaction=True)
def test_beat_syncs_tunnels_and_a_tunnel_going_down_reaches_a_webhook(cloudflare_sim, tmp_path):
    receiver = Receiver()
    Channel.objects.create(name="hook", kind=Channel.Kind.WEBHOOK, target=receiver.url)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "GATEHOUSE_ENV": "local",
        "GATEHOUSE_VAR_DIR": str(tmp_path / "worker"),
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": redis_url(),
        "REDIS_URL": "",
        "CLOUDFLARE_API_TOKEN": "gatehouse-test-token",
        "CLOUDFLARE_ACCOUNT_ID": cloudflare_sim.account_id,
        "CLOUDFLARE_BASE_URL": cloudflare_sim.url,
        "GATEHOUSE_TUNNEL_SYNC_SECONDS": "1",
        "GATEHOUSE_HEARTBEAT_SECONDS": "3600",
        # The webhook receiver listens on loopback, which alert deliveries refuse unless allowed.
        "GATEHOUSE_ALERT_ALLOWED_NETWORKS": "127.0.0.1/32",
    }
    celery = [sys.executable, "-c", CELERY_ON_QUEUE, f"gatehouse-test-tunnels-{uuid.uuid4().hex}"]
    worker = [*celery, "worker", "--concurrency", "1", "--without-gossip", "--without-mingle", "-l", "WARNING"]
    beat = [*celery, "beat", "-l", "WARNING", "-s", str(tmp_path / "schedule")]
    processes = [subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True) for cmd in (worker, beat)]
    try:
        expected = len([t for t in cloudflare_sim.store.list("tunnel", cloudflare_sim.account_id)])
        _wait(lambda: Tunnel.objects.count() == expected, "the first sync", processes)
        name = Tunnel.objects.filter(status=Tunnel.Status.HEALTHY).order_by("name").first().name
        control.run_event(cloudflare_sim.store, "tunnel-down", time.time(), tunnel=name)
        _wait(
            lambda: Delivery.objects.filter(state=Delivery.State.SENT, alert__target_label=name).exists(),
            "the alert delivery",
            processes,
        )
        assert Alert.objects.get(target_label=name).state == Alert.State.OPEN
        assert any(body["alert"]["target"]["label"] == name for body in receiver.bodies)
    finally:
        stop_processes(processes)
        receiver.close()
