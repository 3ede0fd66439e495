import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from alerts import services
from alerts.models import Alert, Channel, Delivery
from dashboard.models import AuditEntry
from dashboard.requestinfo import RequestOrigin


class Receiver:
    """A real HTTP endpoint on loopback that records what it is sent, answering with a chosen status."""

    def __init__(self, status=200, headers=None):
        self.status, self.bodies, self.raw, self.headers = status, [], [], []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.raw.append(raw)
                receiver.bodies.append(json.loads(raw))
                receiver.headers.append(dict(self.headers))
                self.send_response(receiver.status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
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
def allow_loopback(settings):
    """The receiver runs on 127.0.0.1, which Gatehouse refuses unless its network is allowed, as here."""
    settings.GATEHOUSE_ALERT_ALLOWED_NETWORKS = ["127.0.0.1/32"]


@pytest.fixture
def receiver(allow_loopback):
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


def test_failed_delivery_is_retried_then_kept_visible_as_failed(db, allow_loopback, django_capture_on_commit_callbacks):
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
        services.delivery_retry(actor=admin, delivery=delivery, request_origin=RequestOrigin())
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
        services.channel_create(actor=admin, name="x", kind=kind, target=target, request_origin=RequestOrigin())
    assert "target" in exc.value.message_dict


def test_channel_create_audits_without_the_target(db, admin):
    services.channel_create(
        actor=admin,
        name="hooks",
        kind="webhook",
        target="https://hooks.example.com/s3cr3t",
        request_origin=RequestOrigin(),
    )
    entry = AuditEntry.objects.get(action="alert_channel.created")
    assert "s3cr3t" not in json.dumps(entry.details) + entry.target_label


# --- where deliveries may go ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url,refused",
    [
        ("http://127.0.0.1:8000/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://localhost:8000/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://10.1.2.3/hook", "private"),
        ("http://172.16.0.1/hook", "private"),
        ("https://192.168.1.10/hook", "private"),
        ("http://[fd00::1]/hook", "private"),
        ("http://100.64.0.1/hook", "private"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://240.0.0.1/hook", "reserved"),
        ("http://192.0.2.1/hook", "reserved"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://[64:ff9b::a9fe:a9fe]/hook", "link-local"),
        ("http://224.0.0.1/hook", "multicast"),
    ],
)
def test_channel_to_a_non_public_address_is_refused(db, admin, url, refused):
    for kind in ("webhook", "slack"):
        with pytest.raises(ValidationError) as exc:
            services.channel_create(actor=admin, name="x", kind=kind, target=url, request_origin=RequestOrigin())
        assert f"a {refused} address" in exc.value.message_dict["target"][0]
    assert not Channel.objects.exists()


def test_allowed_network_lets_that_network_only(db, admin, settings):
    settings.GATEHOUSE_ALERT_ALLOWED_NETWORKS = ["10.20.0.0/16"]
    services.channel_create(
        actor=admin, name="a", kind="webhook", target="http://10.20.1.2/hook", request_origin=RequestOrigin()
    )
    with pytest.raises(ValidationError):
        services.channel_create(
            actor=admin, name="b", kind="webhook", target="http://10.21.1.2/", request_origin=RequestOrigin()
        )
    with pytest.raises(ValidationError):
        services.channel_create(
            actor=admin, name="c", kind="webhook", target="http://127.0.0.1/", request_origin=RequestOrigin()
        )


def _answer(monkeypatch, names: dict[str, list[str]]):
    """DNS as the test says: each name resolves to the given addresses (others resolve as usual)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in names[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _deliver_to(url: str) -> Delivery:
    channel = Channel.objects.create(name="ops", kind=Channel.Kind.WEBHOOK, target=url)
    alert = Alert.objects.create(kind="k", subject="s")
    delivery = Delivery.objects.create(alert=alert, channel=channel, event="raised")
    services.delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery


@pytest.mark.parametrize(
    "addresses,refused",
    [(["169.254.169.254"], "link-local"), (["203.0.113.9"], "reserved"), (["93.184.215.14", "10.0.0.7"], "private")],
)
def test_name_resolving_to_a_non_public_address_is_refused_at_delivery(db, monkeypatch, addresses, refused):
    # One bad answer among good ones is enough: the connection could go to any of them.
    _answer(monkeypatch, {"hooks.example.com": addresses})
    delivery = _deliver_to("http://hooks.example.com/hook")
    assert delivery.state == Delivery.State.RETRYING
    assert delivery.last_error.startswith("refused: hooks.example.com (")
    assert f"is a {refused} address" in delivery.last_error


def test_delivery_to_a_loopback_address_saved_before_the_rule_is_refused(db, settings):
    settings.GATEHOUSE_ALERT_ALLOWED_NETWORKS = []
    receiver = Receiver()
    try:
        delivery = _deliver_to(receiver.url)
    finally:
        receiver.close()
    assert receiver.bodies == []
    assert "is a loopback address" in delivery.last_error


def test_delivery_connects_to_the_checked_address_and_keeps_the_host_name(db, receiver, monkeypatch):
    _answer(monkeypatch, {"hooks.example.test": ["127.0.0.1"]})
    port = receiver.server.server_port
    delivery = _deliver_to(f"http://hooks.example.test:{port}/hook")
    assert delivery.state == Delivery.State.SENT
    assert receiver.headers[0]["Host"] == f"hooks.example.test:{port}"


def test_redirects_are_not_followed(db, allow_loopback):
    receiver = Receiver(status=307, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    try:
        delivery = _deliver_to(receiver.url)
    finally:
        receiver.close()
    assert delivery.last_error == "HTTP 307"
    assert len(receiver.bodies) == 1


# --- signatures -------------------------------------------------------------------------------------------------


def test_webhook_delivery_carries_a_standard_webhooks_signature(
    db, admin, receiver, django_capture_on_commit_callbacks
):
    created = services.channel_create(
        actor=admin, name="hook", kind="webhook", target=receiver.url, request_origin=RequestOrigin()
    )
    assert created.secret.startswith("whsec_")
    with django_capture_on_commit_callbacks(execute=True):
        services.alert_raise(kind="tunnel.down", subject="Tunnel x is down", body="since 10:00")
    headers, raw = receiver.headers[0], receiver.raw[0]
    # Computed here from the specification, not with Gatehouse's own function.
    key = base64.b64decode(created.secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + raw
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == expected
    assert headers["webhook-id"] == f"msg_{Delivery.objects.get().public_id.hex}"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60


def test_signing_secret_is_stored_encrypted_and_never_audited(db, admin):
    created = services.channel_create(
        actor=admin, name="hook", kind="webhook", target="https://hooks.example.com/x", request_origin=RequestOrigin()
    )
    channel = Channel.objects.get()
    assert channel.secret_sealed and created.secret not in channel.secret_sealed
    assert created.secret.removeprefix("whsec_") not in json.dumps(list(AuditEntry.objects.values()), default=str)


def test_slack_and_email_channels_have_no_signing_secret(db, admin):
    created = services.channel_create(
        actor=admin, name="s", kind="slack", target="https://hooks.slack.com/services/x", request_origin=RequestOrigin()
    )
    assert created.secret == "" and Channel.objects.get().secret_sealed == ""


# --- untrusted names ----------------------------------------------------------------------------------------------


def test_slack_message_escapes_a_tunnel_named_channel_ping(db, receiver, django_capture_on_commit_callbacks):
    _channel(Channel.Kind.SLACK, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        services.alert_raise(kind="tunnel.down", subject="Tunnel <!channel> is down", body="R&D <@U123> <https://x|y>")
    text = receiver.bodies[0]["text"]
    assert text == ("*[Gatehouse] Alert: Tunnel &lt;!channel&gt; is down*\nR&amp;D &lt;@U123&gt; &lt;https://x|y&gt;")
    assert "<" not in text and ">" not in text


def test_slack_escape_handles_every_control_character():
    assert services.slack_escape("a&b<c>d") == "a&amp;b&lt;c&gt;d"
    assert services.slack_escape("&lt;") == "&amp;lt;"


def test_bidirectional_and_control_characters_are_stripped_from_alert_names(db):
    alert = services.alert_raise(
        kind="tunnel.down",
        subject="Tunnel \u202eyxorp\u202c is down\r\nInjected: line",
        body="line one\u2066\nline two\x07",
        target_label="prod\u2067-db",
    )
    assert alert.subject == "Tunnel yxorp is downInjected: line"
    assert alert.body == "line one\nline two"
    assert alert.target_label == "prod-db"


# --- acknowledging and silencing ------------------------------------------------------------------------------


def test_acknowledge_is_audited_once_and_keeps_the_first_person(db, admin, operator):
    alert = services.alert_raise(kind="k", subject="s", body="b")
    services.alert_acknowledge(actor=operator, alert=alert, request_origin=RequestOrigin())
    services.alert_acknowledge(actor=admin, alert=alert, request_origin=RequestOrigin())
    alert.refresh_from_db()
    assert alert.acknowledged_by == operator and alert.acknowledged_at is not None
    assert AuditEntry.objects.filter(action="alert.acknowledged").count() == 1


def test_silenced_alert_is_not_sent_again_when_raised_again(db, operator, receiver, django_capture_on_commit_callbacks):
    _channel(Channel.Kind.WEBHOOK, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        alert = services.alert_raise(kind="k", subject="flapping", body="b", dedupe_key="flap")
    services.alert_silence(actor=operator, alert=alert, hours=4, request_origin=RequestOrigin())
    with django_capture_on_commit_callbacks(execute=True):
        services.alert_resolve(dedupe_key="flap")
        services.alert_raise(kind="k", subject="flapping", body="b", dedupe_key="flap")
    assert [b["event"] for b in receiver.bodies] == ["raised"]
    entry = AuditEntry.objects.get(action="alert.silenced")
    assert entry.details == {"hours": 4} and entry.target_id == str(alert.public_id)

    services.alert_silence(actor=operator, alert=alert, hours=0, request_origin=RequestOrigin())
    with django_capture_on_commit_callbacks(execute=True):
        services.alert_resolve(dedupe_key="flap")
    assert [b["event"] for b in receiver.bodies] == ["raised", "resolved"]
    assert AuditEntry.objects.filter(action="alert.unsilenced").exists()


def test_silence_accepts_only_the_offered_durations(db, operator):
    alert = services.alert_raise(kind="k", subject="s", body="b")
    with pytest.raises(ValidationError):
        services.alert_silence(actor=operator, alert=alert, hours=10_000, request_origin=RequestOrigin())
    assert not AuditEntry.objects.filter(action="alert.silenced").exists()


def test_a_secret_sealed_under_another_secret_key_fails_the_delivery_with_a_reason(db, admin, receiver, settings):
    services.channel_create(
        actor=admin, name="hook", kind="webhook", target=receiver.url, request_origin=RequestOrigin()
    )
    settings.SECRET_KEY = "another-secret-key-after-a-rotation-0123456789abcdef"
    delivery = Delivery.objects.create(
        alert=Alert.objects.create(kind="k", subject="s"), channel=Channel.objects.get(), event="raised"
    )
    services.delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.state == Delivery.State.RETRYING
    assert delivery.last_error.startswith("signing secret unreadable")
    assert receiver.bodies == []


def test_lifting_a_silence_nobody_set_records_nothing(db, operator):
    alert = services.alert_raise(kind="k", subject="s", body="b")
    services.alert_silence(actor=operator, alert=alert, hours=0, request_origin=RequestOrigin())
    assert not AuditEntry.objects.filter(action="alert.unsilenced").exists()


def test_viewers_cannot_acknowledge_or_silence(db, viewer):
    from django.core.exceptions import PermissionDenied

    alert = services.alert_raise(kind="k", subject="s", body="b")
    with pytest.raises(PermissionDenied):
        services.alert_acknowledge(actor=viewer, alert=alert, request_origin=RequestOrigin())
    with pytest.raises(PermissionDenied):
        services.alert_silence(actor=viewer, alert=alert, hours=4, request_origin=RequestOrigin())
    alert.refresh_from_db()
    assert alert.acknowledged_at is None and alert.silenced_until is None


def test_a_valid_international_host_name_is_accepted_and_delivered_to_by_its_ascii_form(
    db, admin, receiver, monkeypatch
):
    _answer(monkeypatch, {"xn--bcher-kva.example": ["127.0.0.1"]})
    port = receiver.server.server_port
    created = services.channel_create(
        actor=admin,
        name="x",
        kind="webhook",
        target=f"http://bücher.example:{port}/hook",
        request_origin=RequestOrigin(),
    )
    alert = Alert.objects.create(kind="k", subject="s")
    delivery = Delivery.objects.create(alert=alert, channel=created.channel, event="raised")
    services.delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.state == Delivery.State.SENT, delivery.last_error
    assert receiver.headers[0]["Host"] == f"xn--bcher-kva.example:{port}"


def test_a_delivery_to_an_invalid_host_saved_earlier_fails_with_a_reason(db):
    delivery = _deliver_to("http://xn--zz.com/hook")
    assert delivery.state == Delivery.State.RETRYING
    assert "is not a valid host name" in delivery.last_error
