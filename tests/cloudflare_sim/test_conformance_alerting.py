"""Notifications through the SDK: webhook destinations, policies, and the notifications the world sends."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cloudflare
import pytest

from cloudflare_sim import alerting, control, faults
from cloudflare_sim.__main__ import main

SECRET = "s3cret-for-tests"


class Receiver:
    """A real HTTP endpoint on a loopback port that records what it was sent and answers `status`."""

    def __init__(self):
        self.received: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                status = receiver.status
                receiver.received.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(self.rfile.read(length))}
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def notifications(self, alert_type: str | None = None) -> list[dict]:
        return [r for r in self.received if "alert_type" in r["body"] and alert_type in (None, r["body"]["alert_type"])]

    def wait_for(self, count: int, alert_type: str | None = None, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.notifications(alert_type)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.notifications(alert_type)


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def _webhook(cf, account_id, url, secret=SECRET) -> str:
    return cf.alerting.destinations.webhooks.create(account_id=account_id, name="gatehouse", url=url, secret=secret).id


def _policy(cf, account_id, webhook_id, alert_type="tunnel_health_event", **extra) -> str:
    return cf.alerting.policies.create(
        account_id=account_id,
        name=f"gatehouse {alert_type}",
        alert_type=alert_type,
        enabled=True,
        mechanisms={"webhooks": [{"id": webhook_id}]},
        **extra,
    ).id


def test_creating_a_webhook_posts_the_test_message_with_the_secret_and_never_returns_it(cf, account_id, receiver):
    webhook_id = _webhook(cf, account_id, receiver.url)

    [test] = receiver.received
    assert test["headers"]["cf-webhook-auth"] == SECRET
    assert test["body"]["text"].startswith("Hello World!") and test["body"]["name"] == "gatehouse"
    listed = cf.alerting.destinations.webhooks.list(account_id=account_id).result
    got = cf.alerting.destinations.webhooks.get(webhook_id, account_id=account_id)
    assert [w.id for w in listed] == [webhook_id]
    assert (got.name, got.url, got.type) == ("gatehouse", receiver.url, "generic")
    assert got.created_at is not None
    raw = cf.alerting.destinations.webhooks.with_raw_response.get(webhook_id, account_id=account_id)
    assert SECRET not in raw.http_response.text


@pytest.mark.parametrize("status", [401, 500])
def test_a_webhook_whose_url_does_not_answer_2xx_is_refused_and_not_saved(cf, account_id, receiver, status):
    receiver.status = status
    with pytest.raises(cloudflare.BadRequestError) as refused:
        _webhook(cf, account_id, receiver.url)
    assert f"HTTP {status}" in str(refused.value)
    assert cf.alerting.destinations.webhooks.list(account_id=account_id).result == []


def test_a_webhook_on_an_unreachable_or_malformed_url_is_refused(cf, account_id):
    with pytest.raises(cloudflare.BadRequestError, match="did not answer"):
        _webhook(cf, account_id, "http://127.0.0.1:9/hook")
    with pytest.raises(cloudflare.BadRequestError, match="http or https"):
        _webhook(cf, account_id, "ftp://example.com/hook")


def test_updating_a_webhook_tests_the_new_url_and_delete_removes_it(cf, account_id, receiver):
    webhook_id = _webhook(cf, account_id, receiver.url)
    receiver.status = 403
    with pytest.raises(cloudflare.BadRequestError):
        cf.alerting.destinations.webhooks.update(
            webhook_id, account_id=account_id, name="renamed", url=receiver.url + "?v=2", secret="other"
        )
    assert cf.alerting.destinations.webhooks.get(webhook_id, account_id=account_id).name == "gatehouse"
    receiver.status = 200
    cf.alerting.destinations.webhooks.update(webhook_id, account_id=account_id, name="renamed", url=receiver.url)
    assert cf.alerting.destinations.webhooks.get(webhook_id, account_id=account_id).name == "renamed"
    assert cf.alerting.destinations.webhooks.delete(webhook_id, account_id=account_id).success is True
    with pytest.raises(cloudflare.NotFoundError):
        cf.alerting.destinations.webhooks.get(webhook_id, account_id=account_id)


def test_policies_round_trip_as_the_sdk_types_them(cf, account_id, receiver):
    webhook_id = _webhook(cf, account_id, receiver.url)
    policy_id = _policy(cf, account_id, webhook_id, filters={"tunnel_id": ["abc"]}, description="why")

    got = cf.alerting.policies.get(policy_id, account_id=account_id)
    assert (got.alert_type, got.enabled, got.description) == ("tunnel_health_event", True, "why")
    assert got.mechanisms.webhooks[0].id == webhook_id
    assert got.filters.tunnel_id == ["abc"]
    assert got.created is not None and got.modified is not None
    assert [p.id for p in cf.alerting.policies.list(account_id=account_id).result] == [policy_id]
    cf.alerting.policies.update(
        policy_id,
        account_id=account_id,
        name="renamed",
        alert_type="tunnel_update_event",
        enabled=False,
        mechanisms={"webhooks": [{"id": webhook_id}]},
    )
    got = cf.alerting.policies.get(policy_id, account_id=account_id)
    assert (got.name, got.alert_type, got.enabled) == ("renamed", "tunnel_update_event", False)
    assert cf.alerting.policies.delete(policy_id, account_id=account_id).success is True
    with pytest.raises(cloudflare.NotFoundError):
        cf.alerting.policies.get(policy_id, account_id=account_id)


@pytest.mark.parametrize(
    "body",
    [
        {"alert_type": "no_such_alert", "enabled": True},
        {"alert_type": "tunnel_health_event"},
        {"alert_type": "tunnel_health_event", "enabled": True, "mechanisms": {"webhooks": [{"id": "f" * 32}]}},
        {"alert_type": "tunnel_health_event", "enabled": True, "mechanisms": {}},
        {"alert_type": "tunnel_health_event", "enabled": True, "filters": {"tunnel_id": "not-a-list"}},
    ],
)
def test_a_policy_cloudflare_would_refuse_is_refused(cf, account_id, receiver, body):
    webhook_id = _webhook(cf, account_id, receiver.url)
    fields = {"name": "p", "mechanisms": {"webhooks": [{"id": webhook_id}]}, **body}
    with pytest.raises(cloudflare.BadRequestError):
        cf.post(f"/accounts/{account_id}/alerting/v3/policies", body=fields, cast_to=object)
    assert cf.alerting.policies.list(account_id=account_id).result == []


def test_a_status_change_is_posted_in_cloudflares_payload_shape_to_matching_webhooks(app, cf, account_id, receiver):
    webhook_id = _webhook(cf, account_id, receiver.url)
    policy_id = _policy(cf, account_id, webhook_id)
    tunnel = control.find_tunnel(app.store, "prod-eu-west-1-core")

    control.run_event(app.store, "tunnel-down", time.time(), tunnel=tunnel["id"])

    [delivery] = receiver.wait_for(1)
    body = delivery["body"]
    assert delivery["headers"]["cf-webhook-auth"] == SECRET
    assert set(body) == {
        "name",
        "text",
        "data",
        "ts",
        "account_id",
        "policy_id",
        "policy_name",
        "alert_type",
        "alert_correlation_id",
        "alert_event",
    }
    assert (body["alert_type"], body["policy_id"], body["account_id"]) == ("tunnel_health_event", policy_id, account_id)
    assert body["data"]["tunnel_id"] == tunnel["id"] and body["data"]["new_status"] == "TUNNEL_STATUS_TYPE_DOWN"
    assert body["alert_event"] == "ALERT_STATE_EVENT_START" and isinstance(body["ts"], int)
    # The delivery thread notes the success once the receiver has answered.
    deadline = time.monotonic() + 2
    while cf.alerting.destinations.webhooks.get(webhook_id, account_id=account_id).last_success is None:
        assert time.monotonic() < deadline, "last_success was never set"
        time.sleep(0.02)


def test_filters_leave_out_other_tunnels_and_statuses(app, cf, account_id, receiver):
    webhook_id = _webhook(cf, account_id, receiver.url)
    chosen = control.find_tunnel(app.store, "prod-eu-west-1-core")
    _policy(
        cf, account_id, webhook_id, filters={"tunnel_id": [chosen["id"]], "new_status": ["TUNNEL_STATUS_TYPE_DOWN"]}
    )

    control.run_event(app.store, "tunnel-down", time.time(), tunnel="prod-eu-west-1-data")
    control.run_event(app.store, "degrade", time.time(), tunnel=chosen["id"])
    control.run_event(app.store, "tunnel-down", time.time(), tunnel=chosen["id"])

    deliveries = receiver.wait_for(1)
    time.sleep(0.3)
    assert [d["body"]["data"]["tunnel_id"] for d in receiver.notifications()] == [chosen["id"]]
    assert deliveries[0]["body"]["data"]["new_status"] == "TUNNEL_STATUS_TYPE_DOWN"


def test_creating_and_deleting_a_tunnel_is_posted_as_a_tunnel_update_event(cf, account_id, receiver):
    _policy(cf, account_id, _webhook(cf, account_id, receiver.url), alert_type="tunnel_update_event")

    tunnel = cf.zero_trust.tunnels.cloudflared.create(account_id=account_id, name="pushed", config_src="cloudflare")
    cf.zero_trust.tunnels.cloudflared.delete(tunnel.id, account_id=account_id)

    deliveries = receiver.wait_for(2, "tunnel_update_event")
    assert [d["body"]["data"]["event_type"] for d in deliveries] == [
        "TUNNEL_EVENT_TYPE_CREATED",
        "TUNNEL_EVENT_TYPE_DELETED",
    ]
    assert {d["body"]["data"]["tunnel_id"] for d in deliveries} == {tunnel.id}


def test_a_disabled_policy_sends_nothing(app, cf, account_id, receiver):
    webhook_id = _webhook(cf, account_id, receiver.url)
    policy_id = _policy(cf, account_id, webhook_id)
    cf.alerting.policies.update(
        policy_id,
        account_id=account_id,
        name="off",
        alert_type="tunnel_health_event",
        enabled=False,
        mechanisms={"webhooks": [{"id": webhook_id}]},
    )
    control.run_event(app.store, "tunnel-down", time.time(), tunnel="prod-eu-west-1-core")
    time.sleep(0.3)
    assert receiver.notifications() == []


def test_the_delivery_fault_drops_or_delays_notifications(app, cf, account_id, receiver):
    _policy(cf, account_id, _webhook(cf, account_id, receiver.url))
    faults.save(app.store, {"webhooks": {"drop_rate": 1.0}})
    control.run_event(app.store, "tunnel-down", time.time(), tunnel="prod-eu-west-1-core")
    time.sleep(0.3)
    assert receiver.notifications() == []
    assert alerting.delivery_stats(app.store)["dropped"] == 1

    faults.save(app.store, {"webhooks": {"delay_s": 0.6}})
    posted = time.monotonic()
    control.run_event(app.store, "tunnel-down", time.time(), tunnel="prod-eu-west-1-data")
    assert receiver.wait_for(1) and time.monotonic() - posted >= 0.6
    with pytest.raises(ValueError):
        faults.save(app.store, {"webhooks": {"drop_rate": 2}})


def test_a_failed_delivery_is_retried(app, cf, account_id, receiver):
    _policy(cf, account_id, _webhook(cf, account_id, receiver.url))
    receiver.status = 503
    control.run_event(app.store, "tunnel-down", time.time(), tunnel="prod-eu-west-1-core")
    receiver.wait_for(1)
    receiver.status = 200
    assert len(receiver.wait_for(2, timeout=6)) == 2
    assert alerting.delivery_stats(app.store)["failed"] >= 1


def test_the_event_command_on_a_state_file_posts_before_it_returns(app, cf, account_id, receiver, demo, capsys):
    _policy(cf, account_id, _webhook(cf, account_id, receiver.url))

    assert main(["event", "recover", "--tunnel", "prod-eu-central-1-data", "--state", app.store.path]) == 0

    [delivery] = receiver.notifications()
    assert delivery["body"]["data"]["new_status"] == "TUNNEL_STATUS_TYPE_HEALTHY"
    assert delivery["body"]["alert_event"] == "ALERT_STATE_EVENT_END"


def test_the_faults_command_sets_the_delivery_fault_and_keeps_the_rest(app, capsys):
    faults.save(app.store, {"max_per_page": {"GET /accounts/*": 3}})
    state = ["--state", app.store.path]
    assert main(["faults", "add", "--webhook-drop-rate", "0.5", "--webhook-delay-s", "2", *state]) == 0
    config = faults.load(app.store)
    assert config["webhooks"] == {"drop_rate": 0.5, "delay_s": 2.0}
    assert config["max_per_page"] == {"GET /accounts/*": 3}
    assert main(["faults", "add", "--webhook-drop-rate", "7", *state]) == 1
