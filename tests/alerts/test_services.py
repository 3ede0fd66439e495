import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from alerts import services
from alerts.models import Alert, Channel, Delivery
from dashboard.models import AuditEntry
from dashboard.requestinfo import Origin


class Receiver:
    """A real HTTP endpoint on loopback that records what it is sent, answering with a chosen status."""

    def __init__(self, status=200):
        self.status, self.bodies = status, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _channel(kind, target, name="ops"):
    return Channel.objects.create(name=name, kind=kind, target=target)


def test_raise_is_idempotent_per_dedupe_key_while_open(db):
    first = services.alert_raise(kind="tunnel.down", subject="a", body="b", dedupe_key="k")
    again = services.alert_raise(kind="tunnel.down", subject="a", body="b", dedupe_key="k")
    assert first.pk == again.pk
    services.alert_resolve(dedupe_key="k")
    third = services.alert_raise(kind="tunnel.down", subject="a", body="b", dedupe_key="k")
    assert third.pk != first.pk


def test_resolve_without_open_alert_returns_none(db):
    assert services.alert_resolve(dedupe_key="nothing") is None


def test_webhook_gets_json_for_raise_and_resolve(db, receiver, django_capture_on_commit_callbacks):
    _channel(Channel.Kind.WEBHOOK, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        services.alert_raise(kind="tunnel.down", subject="Tunnel x is down", body="since 10:00", dedupe_key="x")
        services.alert_resolve(dedupe_key="x", body="back")
    assert [b["event"] for b in receiver.bodies] == ["raised", "resolved"]
    assert receiver.bodies[0]["alert"]["subject"] == "Tunnel x is down"
    assert set(Delivery.objects.values_list("state", flat=True)) == {"sent"}


def test_slack_gets_its_incoming_webhook_format(db, receiver, django_capture_on_commit_callbacks):
    _channel(Channel.Kind.SLACK, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        services.alert_raise(kind="tunnel.down", subject="Tunnel x is down", body="since 10:00")
    assert receiver.bodies == [{"text": "*[Gatehouse] Alert: Tunnel x is down*\nsince 10:00"}]


def test_email_goes_through_djangos_mail(db, mailoutbox, django_capture_on_commit_callbacks):
    _channel(Channel.Kind.EMAIL, "oncall@example.com, sre@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        services.alert_raise(kind="tunnel.down", subject="Tunnel x is down", body="since 10:00")
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["oncall@example.com", "sre@example.com"]
    assert "Tunnel x is down" in mail.outbox[0].subject


def test_failed_delivery_is_retried_then_kept_visible_as_failed(db, django_capture_on_commit_callbacks):
    receiver = Receiver(status=500)
    try:
        _channel(Channel.Kind.WEBHOOK, receiver.url)
        with django_capture_on_commit_callbacks(execute=True):
            services.alert_raise(kind="tunnel.down", subject="s", body="b")
    finally:
        receiver.close()
    delivery = Delivery.objects.get()
    # Eager tasks run every retry at once; a real worker spaces them out with backoff.
    assert delivery.state == Delivery.State.FAILED
    assert delivery.attempts == services.MAX_ATTEMPTS == len(receiver.bodies)
    assert delivery.last_error == "HTTP 500"


def test_delivery_attempt_twice_sends_once(db, receiver):
    channel = _channel(Channel.Kind.WEBHOOK, receiver.url)
    alert = Alert.objects.create(kind="k", subject="s")
    delivery = Delivery.objects.create(alert=alert, channel=channel, event="raised")
    services.delivery_attempt(delivery_id=delivery.pk)
    services.delivery_attempt(delivery_id=delivery.pk)
    assert len(receiver.bodies) == 1


def test_retry_of_failed_delivery_sends_again_and_is_audited(db, admin, receiver, django_capture_on_commit_callbacks):
    channel = _channel(Channel.Kind.WEBHOOK, receiver.url)
    alert = Alert.objects.create(kind="k", subject="s")
    delivery = Delivery.objects.create(alert=alert, channel=channel, event="raised", state="failed", attempts=6)
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_retry(actor=admin, delivery=delivery, origin=Origin())
    delivery.refresh_from_db()
    assert delivery.state == Delivery.State.SENT
    assert AuditEntry.objects.filter(action="alert_delivery.retried").exists()


@pytest.mark.parametrize(
    "kind,target",
    [
        ("webhook", "ftp://example.com/hook"),
        ("webhook", "file:///etc/passwd"),
        ("slack", "javascript:alert(1)"),
        ("email", "not-an-address"),
        ("email", ""),
    ],
)
def test_channel_targets_are_validated(db, admin, kind, target):
    with pytest.raises(ValidationError) as exc:
        services.channel_create(actor=admin, name="x", kind=kind, target=target, origin=Origin())
    assert "target" in exc.value.message_dict


def test_channel_create_audits_without_the_target(db, admin):
    services.channel_create(
        actor=admin, name="hooks", kind="webhook", target="https://hooks.example.com/s3cr3t", origin=Origin()
    )
    entry = AuditEntry.objects.get(action="alert_channel.created")
    assert "s3cr3t" not in json.dumps(entry.details) + entry.target_label
