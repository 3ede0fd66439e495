"""Broker loss is an outage of the queue, not of the console: what a click saved stays saved, the click answers
normally and says what happens next, and the task is sent once the broker is back (dashboard/queue.py)."""

import json
import logging
import shutil
import subprocess
import time
from datetime import timedelta

import pytest
import redis
from django.urls import reverse
from django.utils import timezone

from dashboard import queue
from dashboard.models import AuditEntry
from tests.conftest import free_port
from tunnels.models import Tunnel, TunnelChange

# What a click may spend on a broker that is down, on a machine shared with other test runs.
CLICK_BOUND = 2.5


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port, stopped and started again like a broker that
    goes away and comes back."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.dir = tmp_path
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://:s3cret-broker-password@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--requirepass", "s3cret-broker-password", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = self.client()
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)

    def messages(self, queue: str = "celery") -> list[dict]:
        return [json.loads(raw) for raw in self.client().lrange(queue, 0, -1)]


@pytest.fixture
def private_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process.poll() is None:
        server.stop()


def _timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def _toasts(client, url) -> str:
    return client.get(url).content.decode()


# --- clicks while the broker is down ----------------------------------------------------------------------------


def test_creating_a_tunnel_while_the_broker_is_down_is_saved_and_says_it_runs_when_the_queue_is_back(
    transactional_db, operator_client, broker_down, caplog
):
    caplog.set_level(logging.WARNING)
    response, took = _timed(lambda: operator_client.post(reverse("tunnels:tunnel_create"), {"name": "edge-1"}))
    change = TunnelChange.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("tunnels:change_detail", kwargs={"change_id": change.public_id})
    assert took < CLICK_BOUND
    assert change.status == TunnelChange.Status.PENDING
    assert "Saved; it runs when the queue is back." in _toasts(operator_client, response["Location"])
    assert "tunnels.tasks.tunnel_change_run" in caplog.text
    assert "s3cret-broker-password" not in caplog.text


def test_a_tunnel_change_never_sent_is_sent_by_the_resume_pass_once_the_broker_is_back(
    transactional_db, operator_client, celery_broker, private_redis
):
    from dashboard.operations import operations_resume

    celery_broker(private_redis.url)
    private_redis.stop()
    response = operator_client.post(reverse("tunnels:tunnel_create"), {"name": "edge-2"})
    assert response.status_code == 302
    change = TunnelChange.objects.get()

    private_redis.start()
    assert private_redis.messages() == []
    # The resume pass leaves runs that made progress in the last 30 s to the worker that may be on them.
    TunnelChange.objects.filter(pk=change.pk).update(updated_at=timezone.now() - timedelta(seconds=31))
    assert operations_resume() == 1
    [message] = private_redis.messages()
    assert message["headers"]["task"] == "tunnels.tasks.tunnel_change_run"
    assert message["headers"]["argsrepr"] == f"({change.pk},)"


def test_revoking_a_vendor_while_the_broker_is_down_is_audited_and_answers_normally(
    transactional_db, operator, operator_client, broker_down
):
    from vendors.models import Vendor, WorkflowRun

    vendor = Vendor.objects.create(
        name="Acme", sponsor=operator, contacts=["a@acme.example"], review_due=timezone.now().date(), status="active"
    )
    url = reverse("vendors:vendor_revoke", kwargs={"public_id": vendor.public_id})
    response, took = _timed(lambda: operator_client.post(url))
    assert response.status_code == 302 and took < CLICK_BOUND
    run = WorkflowRun.objects.get(vendor=vendor)
    assert run.kind == WorkflowRun.Kind.REVOKE and run.status == WorkflowRun.Status.PENDING
    assert AuditEntry.objects.filter(action="vendor.revoke_requested", target_id=str(vendor.public_id)).exists()
    assert "Saved; it runs when the queue is back." in _toasts(operator_client, response["Location"])


@pytest.mark.parametrize(
    ("url_name", "page", "every"),
    [
        ("vendors:apps_refresh", "vendors:application_list", "15 minutes"),
        ("discovery:access_policies_refresh", "discovery:application_list", "15 minutes"),
    ],
)
def test_a_refresh_asked_while_the_broker_is_down_says_the_scheduled_refresh_will_do_it(
    transactional_db, operator_client, broker_down, url_name, page, every
):
    response, took = _timed(lambda: operator_client.post(reverse(url_name)))
    assert response.status_code == 302 and took < CLICK_BOUND
    body = _toasts(operator_client, reverse(page))
    assert "The queue is unreachable, so this refresh was not sent" in body
    assert f"every {every}" in body
    assert "Refreshing" not in body and "Reading the reusable" not in body


def test_a_tunnel_page_opens_while_the_broker_is_down(transactional_db, viewer_client, broker_down):
    tunnel = Tunnel.objects.create(cf_id="6ff42ae2-765d-4adf-8112-31c55c1551ef", name="edge", remote_config=True)
    response, took = _timed(lambda: viewer_client.get(reverse("tunnels:tunnel_detail", args=[tunnel.cf_id])))
    assert response.status_code == 200 and took < CLICK_BOUND
    # Nobody clicked anything: the page does not talk about the queue; the sync reads the configuration in rotation.
    assert "queue" not in response.content.decode()
    assert Tunnel.objects.get(pk=tunnel.pk).config_requested_at is not None


def test_a_broker_that_accepts_and_never_answers_holds_a_click_under_the_bound(
    transactional_db, operator_client, celery_broker, silent_port, caplog
):
    celery_broker(f"redis://:s3cret-broker-password@127.0.0.1:{silent_port}/0")
    response, took = _timed(lambda: operator_client.post(reverse("tunnels:tunnel_create"), {"name": "edge-3"}))
    assert response.status_code == 302 and took < CLICK_BOUND
    assert TunnelChange.objects.get().status == TunnelChange.Status.PENDING
    assert "s3cret-broker-password" not in caplog.text


def test_connecting_push_events_while_the_broker_is_down_is_saved_for_the_resume_pass(
    transactional_db, admin_client, broker_down, settings
):
    from tunnels.models import PushChange, PushConnection

    settings.GATEHOUSE_PUBLIC_URL = "https://gatehouse.example.com"
    response = admin_client.post(reverse("dashboard:push_connect"))
    assert response.status_code == 302
    # A change of the operation engine: its resume pass sends it once the queue is back.
    assert PushConnection.objects.get().state == PushConnection.State.CONNECTING
    assert PushChange.objects.get().status == PushChange.Status.PENDING
    body = _toasts(admin_client, response["Location"])
    assert queue.RESUMED in body
    assert "Connecting push events" not in body
    assert AuditEntry.objects.filter(action="push.connect_requested").exists()
