"""Notifications: which webhooks hear of a tunnel event, the payload Cloudflare sends them, and delivering it.

An event (a tunnel's status changes, a tunnel is created or deleted) is matched against the account's enabled
notification policies of its alert type and their filters; one delivery per (policy, webhook) is written to an
outbox in the state file, in the same transaction as the change. A delivery thread posts them, so the request or
clock step that changed the world never waits on a receiver, and an event forced from the CLI on the state file
reaches the webhooks through whichever simulator process delivers first (claiming a delivery deletes it).

Payloads follow Cloudflare's webhook payload schema: `name` (the policy's), `text`, `data` (alert-specific), `ts`,
`account_id`, `policy_id`, `policy_name`, `alert_type`, `alert_correlation_id`, `alert_event`; the webhook's
secret rides in `cf-webhook-auth`. Tunnel data carries `tunnel_id`, `tunnel_name` and, for health events,
`new_status` as Cloudflare spells it (`TUNNEL_STATUS_TYPE_DOWN`); creation and deletion carry `event_type`
(`TUNNEL_EVENT_TYPE_CREATED` / `_DELETED`).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from datetime import UTC, datetime

import httpx

from cloudflare_sim import faults
from cloudflare_sim.store import Doc, Store

log = logging.getLogger("cloudflare_sim")

HEALTH = "tunnel_health_event"
UPDATE = "tunnel_update_event"
TEST_TEXT = (
    "Hello World! This is a test message sent from https://cloudflare.com. "
    "If you can see this, your webhook is configured correctly."
)
# Filters the simulator understands on tunnel events; any other filter key is ignored, as it cannot apply.
TUNNEL_FILTERS = ("tunnel_id", "tunnel_name", "new_status", "event_type")
POST_TIMEOUT = 5.0
RETRIES = 3
IDLE_EXIT_SECONDS = 30.0


def status_name(status: str) -> str:
    return f"TUNNEL_STATUS_TYPE_{status.upper()}"


def post(url: str, payload: Doc, secret: str | None) -> int | None:
    """POST one payload; the receiver's status, or None when it could not be reached."""
    headers = {"cf-webhook-auth": secret} if secret else {}
    try:
        return httpx.post(url, json=payload, headers=headers, timeout=POST_TIMEOUT).status_code
    except httpx.HTTPError:
        return None


def test_message(webhook_name: str, now: float) -> Doc:
    """What Cloudflare posts to a destination when it is created or updated."""
    return {"name": webhook_name, "text": TEST_TEXT, "data": {}, "ts": int(now)}


def _matches(policy: Doc, data: Doc) -> bool:
    for key, values in (policy.get("filters") or {}).items():
        if key in TUNNEL_FILTERS and key in data and data[key] not in values:
            return False
    return True


def tunnel_health_changed(store: Store, tunnel: Doc, before: str, after: str, now: float) -> None:
    data = {
        "account_id": tunnel["account_tag"],
        "tunnel_id": tunnel["id"],
        "tunnel_name": tunnel["name"],
        "new_status": status_name(after),
        "old_status": status_name(before),
    }
    text = f"Tunnel {tunnel['name']} ({tunnel['id']}) is now {after.capitalize()} (was {before.capitalize()})."
    start = after in ("down", "degraded")
    state = "ALERT_STATE_EVENT_START" if start else "ALERT_STATE_EVENT_END"
    _notify(store, tunnel["account_tag"], HEALTH, data, text, now, state)


def tunnel_lifecycle(store: Store, tunnel: Doc, event: str, now: float) -> None:
    """`event` is "created" or "deleted"."""
    data = {
        "account_id": tunnel["account_tag"],
        "tunnel_id": tunnel["id"],
        "tunnel_name": tunnel["name"],
        "event_type": f"TUNNEL_EVENT_TYPE_{event.upper()}",
    }
    text = f"Tunnel {tunnel['name']} ({tunnel['id']}) was {event}."
    _notify(store, tunnel["account_tag"], UPDATE, data, text, now, "ALERT_STATE_EVENT_START")


def _notify(store: Store, account_id: str, alert_type: str, data: Doc, text: str, now: float, state: str) -> None:
    policies = [
        p
        for p in store.list("alert_policy", account_id)
        if p.get("enabled") and p.get("alert_type") == alert_type and _matches(p, data)
    ]
    if not policies:
        return
    config = faults.load(store)["webhooks"]
    rng = random.Random()  # noqa: S311 - simulated delivery faults
    correlation = uuid.uuid4().hex
    queued = False
    with store.write():
        for policy in policies:
            for ref in (policy.get("mechanisms") or {}).get("webhooks") or []:
                webhook = store.get("alert_webhook", ref.get("id", ""), account_id)
                if webhook is None:
                    continue
                if config["drop_rate"] and rng.random() < config["drop_rate"]:
                    _count(store, "dropped")
                    continue
                payload = {
                    "name": policy["name"],
                    "text": text,
                    "data": data,
                    "ts": int(now),
                    "account_id": account_id,
                    "policy_id": policy["id"],
                    "policy_name": policy["name"],
                    "alert_type": alert_type,
                    "alert_correlation_id": correlation,
                    "alert_event": state,
                }
                delivery = {
                    "id": uuid.uuid4().hex,
                    "webhook_id": webhook["id"],
                    "payload": payload,
                    # Real time, not the world's clock: delivery is real I/O even when a test moves the world.
                    "due": time.time() + config["delay_s"],
                    "attempts": 0,
                }
                store.put("alert_delivery", delivery, account_id)
                queued = True
    if queued:
        dispatcher_for(store.path).wake()


def _count(store: Store, outcome: str) -> None:
    counts = store.get_meta("webhook_deliveries") or {}
    counts[outcome] = counts.get(outcome, 0) + 1
    store.set_meta("webhook_deliveries", counts)


def delivery_stats(store: Store) -> Doc:
    counts = {"delivered": 0, "failed": 0, "dropped": 0, **(store.get_meta("webhook_deliveries") or {})}
    return {**counts, "pending": len(store.list("alert_delivery"))}


def _claim(store: Store, now: float) -> list[tuple[Doc, str]]:
    with store.write() as conn:
        rows = conn.execute("SELECT account_id, doc FROM objects WHERE kind='alert_delivery' ORDER BY seq").fetchall()
        due = []
        for account_id, raw in rows:
            delivery = json.loads(raw)
            if delivery["due"] <= now:
                store.delete("alert_delivery", delivery["id"])
                due.append((delivery, account_id))
        return due


def deliver_due(store: Store) -> int:
    """Post every delivery that is due; a failed one is retried later, a few times. Returns how many were posted."""
    sent = 0
    # Counted from before the claim, so `flush` never sees an empty outbox while a claimed delivery is unposted.
    _in_flight(store.path, 1)
    try:
        for delivery, account_id in _claim(store, time.time()):
            sent += _deliver(store, delivery, account_id)
    finally:
        _in_flight(store.path, -1)
    return sent


def _in_flight(path: str, change: int) -> None:
    with _lock:
        _posting[path] = _posting.get(path, 0) + change


def _deliver(store: Store, delivery: Doc, account_id: str) -> int:
    """Post one delivery; 1 when the receiver took it."""
    webhook = store.get("alert_webhook", delivery["webhook_id"], account_id)
    if webhook is None:
        return 0
    status = post(webhook["url"], delivery["payload"], webhook.get("_secret"))
    stamp = _iso(time.time())
    log.info("webhook %s answered %s", webhook["id"], status)
    with store.write():
        current = store.get("alert_webhook", webhook["id"], account_id)
        if status is not None and 200 <= status < 300:
            _count(store, "delivered")
            if current is not None:
                store.put("alert_webhook", {**current, "last_success": stamp}, account_id)
            return 1
        _count(store, "failed")
        if current is not None:
            store.put("alert_webhook", {**current, "last_failure": stamp}, account_id)
        delivery["attempts"] += 1
        if delivery["attempts"] < RETRIES:
            delivery["due"] = time.time() + 2 ** delivery["attempts"]
            store.put("alert_delivery", delivery, account_id)
    return 0


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Dispatcher(threading.Thread):
    """Posts due deliveries of one state file. A lazily started one stops after a quiet spell; `serve` keeps one."""

    def __init__(self, path: str, *, permanent: bool = False):
        super().__init__(daemon=True, name="cloudflare-sim-webhooks")
        self.path, self.permanent = path, permanent
        self.woken = threading.Event()
        self.stopped = threading.Event()

    def wake(self) -> None:
        self.woken.set()

    def run(self) -> None:
        store = Store(self.path)
        idle_since = time.monotonic()
        try:
            while not self.stopped.is_set():
                self.woken.clear()
                try:
                    if deliver_due(store) or store.list("alert_delivery"):
                        idle_since = time.monotonic()
                except Exception:  # a broken state file must not end the server's delivery loop
                    log.exception("webhook delivery failed")
                if not self.permanent and time.monotonic() - idle_since > IDLE_EXIT_SECONDS:
                    break
                self.woken.wait(0.2)
        finally:
            with _lock:
                if _dispatchers.get(self.path) is self:
                    del _dispatchers[self.path]
            store.close()


_lock = threading.Lock()
_dispatchers: dict[str, Dispatcher] = {}
# Delivery rounds under way, per state file: the CLI waits for them before it exits.
_posting: dict[str, int] = {}


def dispatcher_for(path: str, *, permanent: bool = False) -> Dispatcher:
    """This process's delivery thread for a state file, started if none runs."""
    with _lock:
        dispatcher = _dispatchers.get(path)
        if dispatcher is None or not dispatcher.is_alive():
            dispatcher = Dispatcher(path, permanent=permanent)
            _dispatchers[path] = dispatcher
            dispatcher.start()
        return dispatcher


def flush(store: Store, timeout: float = 30.0) -> None:
    """Deliver what this process queued before it exits (the CLI on a state file), retries included."""
    deadline = time.monotonic() + timeout
    while (store.list("alert_delivery") or _posting.get(store.path)) and time.monotonic() < deadline:
        deliver_due(store)
        time.sleep(0.1)
