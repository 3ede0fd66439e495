"""Push events: Cloudflare's notifications of tunnel health changes, creations and deletions, sent to Gatehouse.

Connecting creates, at Cloudflare, one webhook destination (Gatehouse's public URL + /hooks/cloudflare/, with a
random secret that Cloudflare sends back in `cf-webhook-auth`) and two notification policies (`tunnel_health_event`
and `tunnel_update_event`, every tunnel), and, when the admin asks, an Access application with a bypass policy for
that one path so Cloudflare's posts get past Access. Every object's name carries `mark()`, deterministic per public
URL: a retried step finds what an interrupted one created, and disconnecting deletes only objects with the mark.

Each notification is recorded once (a replay has the same key) and queues a refresh of that one tunnel at
background priority: its status as Cloudflare reported it and its connectors (one API call). Creations and
deletions make the next pass read the whole list. Polling stays as the safety net: while notifications keep
arriving (`trusted`), the pass reads the whole list only every GATEHOUSE_TUNNEL_PUSH_STATUS_SECONDS and the calls
saved go to connector rotation.
"""

import atexit
import contextlib
import hashlib
import json
import logging
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db import connection as db_connection
from django.db.models import Count, F, Q, Value
from django.db.models.functions import Coalesce, Greatest
from django.urls import reverse
from django.utils import timezone

from dashboard import queue
from dashboard.models import User
from dashboard.operations import Engine, StepFailed, note
from dashboard.requestinfo import RequestOrigin
from dashboard.sealing import Purpose, seal, unseal
from dashboard.services import audit_record
from integrations import cloudflare as cf
from integrations import records
from tunnels.models import PushChange, PushChangeStep, PushConnection, PushEvent, StatusChange, SyncCursor, Tunnel

logger = logging.getLogger(__name__)

HEALTH = "tunnel_health_event"
UPDATE = "tunnel_update_event"
TEST = "test"
MAX_BODY = 64 * 1024
EVENT_KEEP = timedelta(days=7)
_CORRELATION = re.compile(r"^[0-9A-Za-z-]{1,64}\Z")
_STATUS = re.compile(r"^TUNNEL_STATUS_TYPE_(HEALTHY|DEGRADED|DOWN|INACTIVE)\Z")
_EVENT = re.compile(r"^TUNNEL_EVENT_TYPE_(CREATED|DELETED|UPDATED)\Z")

AUDIT_ACTIONS = {
    "push.connect_requested": "Push events connection requested",
    "push.connected": "Push events connected",
    "push.connect_failed": "Push events connection failed",
    "push.disconnect_requested": "Push events disconnection requested",
    "push.disconnected": "Push events disconnected",
    "push.disconnect_failed": "Push events disconnection failed",
    "push.change_retried": "Push events change retried",
}


class PushError(ValidationError):
    """The request cannot be carried out as things are (shown to the admin as is)."""


def connection() -> PushConnection:
    return PushConnection.objects.get_or_create(pk=1)[0]


def webhook_path() -> str:
    return reverse("dashboard:push_webhook")


def webhook_url() -> str:
    return f"{settings.GATEHOUSE_PUBLIC_URL}{webhook_path()}" if settings.GATEHOUSE_PUBLIC_URL else ""


def mark(url: str) -> str:
    """What every object Gatehouse creates for push events carries in its name."""
    return f"gatehouse-push {hashlib.sha256(url.encode()).hexdigest()[:8]}"


def _names(url: str) -> dict[str, str]:
    m = mark(url)
    return {
        "destination": f"{m} tunnel events",
        HEALTH: f"{m} tunnel health",
        UPDATE: f"{m} tunnel created or deleted",
        "bypass_policy": f"{m} webhook bypass",
        "bypass_app": f"{m} webhook path",
    }


# --- connecting and disconnecting (a click; the work is an operation of the shared engine) ---------------------


def _connect_steps(access_bypass: bool) -> list[tuple[str, str]]:
    bypass = [("bypass", "Let Cloudflare's posts past Access: an Access application bypassing it for the webhook path")]
    return [
        *(bypass if access_bypass else []),
        ("destination", "Create or update the webhook destination (Cloudflare sends it a test message)"),
        ("policies", "Create or update the notification policies: tunnel health, tunnels created or deleted"),
    ]


_DISCONNECT_STEPS = [
    ("policies", "Delete the notification policies"),
    ("destination", "Delete the webhook destination"),
    ("bypass", "Delete the Access application bypassing Access for the webhook path, and its policy"),
]


def push_connect(*, actor: User, access_bypass: bool, request_origin: RequestOrigin | None = None) -> PushChange:
    """Start connecting: a fresh secret is sealed and saved first, so Cloudflare's test message is answered."""
    url = webhook_url()
    if not url:
        raise PushError("Set GATEHOUSE_PUBLIC_URL to the address Cloudflare can reach Gatehouse at, then connect.")
    request_origin = request_origin or RequestOrigin()
    with transaction.atomic():
        conn = PushConnection.objects.select_for_update().get(pk=connection().pk)
        if conn.state == PushConnection.State.CONNECTED and conn.url == url and conn.bypass_wanted == access_bypass:
            raise PushError("Push events are already connected.")
        # Recorded before the connection changes: refused while another change runs, whose secret stays.
        change = _ENGINE.start(
            PushChange(connection=conn, kind=PushChange.Kind.CONNECT, **_origin(actor, request_origin)),
            steps=_connect_steps(access_bypass),
        )
        conn.state = PushConnection.State.CONNECTING
        conn.secret_sealed = seal(secrets.token_urlsafe(32), purpose=Purpose.PUSH_WEBHOOK)
        conn.url, conn.bypass_wanted, conn.error, conn.changed_at = url, access_bypass, "", timezone.now()
        conn.save()
        audit_record(
            action="push.connect_requested",
            actor=actor,
            target_type="push",
            target_label=url,
            details={"url": url, "access_bypass": access_bypass, "change": str(change.public_id)},
            request_origin=request_origin,
        )
    return change


def push_disconnect(*, actor: User, request_origin: RequestOrigin | None = None) -> PushChange:
    request_origin = request_origin or RequestOrigin()
    with transaction.atomic():
        conn = PushConnection.objects.select_for_update().get(pk=connection().pk)
        if conn.state == PushConnection.State.OFF:
            raise PushError("Push events are not connected.")
        change = _ENGINE.start(
            PushChange(connection=conn, kind=PushChange.Kind.DISCONNECT, **_origin(actor, request_origin)),
            steps=_DISCONNECT_STEPS,
        )
        conn.state, conn.error, conn.changed_at = PushConnection.State.DISCONNECTING, "", timezone.now()
        conn.save(update_fields=["state", "error", "changed_at"])
        audit_record(
            action="push.disconnect_requested",
            actor=actor,
            target_type="push",
            target_label=conn.url,
            details={"change": str(change.public_id)},
            request_origin=request_origin,
        )
    return change


def push_change_retry(*, actor: User, change: PushChange, request_origin: RequestOrigin) -> PushChange:
    """Go on with the latest stopped change from its step; each step reads Cloudflare afresh."""
    if not actor.has_role(User.Role.ADMIN):
        raise PermissionDenied("Only admins connect and disconnect push events.")
    latest = change.connection.changes.first()
    if latest is None or latest.pk != change.pk:
        raise ValidationError("A newer change to push events has replaced this one.")
    return _ENGINE.retry(run_id=change.pk, actor=actor, request_origin=request_origin)


def push_change_drive(task: Any, change_id: int) -> None:
    """The task's work: the change's steps, with the engine's retries and backoff."""
    _ENGINE.drive(task, change_id)


def _origin(actor: User, request_origin: RequestOrigin) -> dict[str, Any]:
    return {
        "actor_email": actor.email,
        "source_ip": request_origin.source_ip,
        "request_id": request_origin.request_id[:64],
    }



def _save(conn: PushConnection, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(conn, name, value)
    conn.save(update_fields=list(fields))


@dataclass
class _Receipt:
    """What the change's step is given; the step row keeps `answers` (ids and names, never the secret)."""

    run: PushChange
    answers: list[dict[str, Any]] = field(default_factory=list)


class PushChanges(Engine[PushChange, PushChangeStep, _Receipt]):
    """Connecting or disconnecting: a step per kind of object at Cloudflare, each recording the ids it made or
    deleted on the connection as soon as Cloudflare answers, so a retried step finds what an interrupted one made.
    The audit keeps the actions push events have always written."""

    run_model = PushChange
    step_model = PushChangeStep
    related = ("connection",)
    subject = "connection"
    retry_first = 4.0

    def enqueue(self, run_id: int, *, countdown: float = 0.0) -> None:
        from tunnels.tasks import push_change_run

        queue.send(push_change_run, run_id, countdown=countdown)

    def busy_message(self, active: PushChange) -> str:
        return "Gatehouse is already changing the push connection; wait for it to finish."

    def receipt(self, run: PushChange) -> _Receipt:
        return _Receipt(run=run)

    def execute(self, step: PushChangeStep, receipt: _Receipt) -> None:
        conn = PushConnection.objects.get(pk=receipt.run.connection_id)
        steps = _CONNECT if receipt.run.kind == PushChange.Kind.CONNECT else _DISCONNECT
        try:
            steps[step.key](conn, receipt)
        except cf.CloudflareTransient:
            raise
        except cf.CloudflareError as exc:
            raise StepFailed(exc.message) from exc

    def succeeded(self, run: PushChange) -> dict[str, Any]:
        """The connection takes the state the change was for; returns what the audit entry says."""
        conn = PushConnection.objects.get(pk=run.connection_id)
        now = timezone.now()
        if run.kind == PushChange.Kind.CONNECT:
            _save(conn, state=PushConnection.State.CONNECTED, connected_at=now, changed_at=now)
            return {
                "destination": conn.destination_id,
                "policies": [conn.health_policy_id, conn.update_policy_id],
                "access_bypass": conn.bypass_app_id or "",
            }
        _save(
            conn,
            state=PushConnection.State.OFF,
            secret_sealed="",
            destination_id="",
            health_policy_id="",
            update_policy_id="",
            bypass_app_id="",
            bypass_policy_id="",
            error="",
            connected_at=None,
            changed_at=now,
        )
        return {"policies": run.data.get("policies", []), "destinations": run.data.get("destinations", [])}

    def stopped(self, run: PushChange, step: PushChangeStep, *, reason: str, findings: list[str]) -> None:
        conn = PushConnection.objects.get(pk=run.connection_id)
        _save(conn, state=PushConnection.State.FAILED, error=reason[:500], changed_at=timezone.now())

    def retried(self, run: PushChange, *, actor: Any, request_origin: RequestOrigin | None) -> None:
        conn = PushConnection.objects.get(pk=run.connection_id)
        connecting = run.kind == PushChange.Kind.CONNECT
        state = PushConnection.State.CONNECTING if connecting else PushConnection.State.DISCONNECTING
        _save(conn, state=state, error="", changed_at=timezone.now())
        audit_record(
            action="push.change_retried",
            actor=actor,
            target_type="push",
            target_label=conn.url,
            details={"change": str(run.public_id), "kind": run.kind},
            request_origin=request_origin,
        )

    def audit(self, run: PushChange, event: str, details: dict[str, Any]) -> None:
        connecting = run.kind == PushChange.Kind.CONNECT
        if event == "succeeded":
            action = "push.connected" if connecting else "push.disconnected"
        elif event in ("failed", "needs_attention"):
            action = "push.connect_failed" if connecting else "push.disconnect_failed"
            details = {"error": details["reason"]}
        else:
            return
        audit_record(
            action=action,
            actor_email=run.actor_email,
            target_type="push",
            target_label=run.connection.url,
            details=details,
            request_origin=run.request_origin,
        )


_ENGINE = PushChanges()


# An object found by id or by its name is updated; one deleted at Cloudflare meanwhile is created again.


def _connect_bypass(conn: PushConnection, receipt: _Receipt) -> None:
    names = _names(conn.url)
    parts = urlsplit(conn.url)
    domain = f"{parts.hostname}{parts.path}"
    if not conn.bypass_policy_id:
        policies = cf.access_policies_all(priority=cf.Priority.INTERACTIVE)
        policy = next((p for p in policies if p.name == names["bypass_policy"]), None)
        if policy is None:
            policy = cf.access_policy_create(
                name=names["bypass_policy"],
                decision="bypass",
                include=[{"everyone": {}}],
                session_duration="24h",
                priority=cf.Priority.INTERACTIVE,
            )
        _save(conn, bypass_policy_id=policy.id)
    note(receipt, call="access.policies", target=names["bypass_policy"], answer=conn.bypass_policy_id)
    if not conn.bypass_app_id:
        found_apps = cf.access_apps_named(names["bypass_app"])
        app = found_apps[0] if found_apps else None
        if app is None:
            app = cf.access_bypass_app_create(name=names["bypass_app"], domain=domain, policy_id=conn.bypass_policy_id)
        _save(conn, bypass_app_id=app.id)
    note(receipt, call="access.apps", target=names["bypass_app"], answer=conn.bypass_app_id)


def _connect_destination(conn: PushConnection, receipt: _Receipt) -> None:
    name = _names(conn.url)["destination"]
    priority = cf.Priority.INTERACTIVE
    existing = {d.name: d.id for d in cf.webhook_destinations(priority=priority)}
    known = {conn.destination_id, existing.get(name, "")} & set(existing.values())
    webhook_id = cf.webhook_destination_save(
        name=name,
        url=conn.url,
        secret=unseal(conn.secret_sealed, purpose=Purpose.PUSH_WEBHOOK),
        webhook_id=min(known, default=""),
        priority=priority,
    )
    _save(conn, destination_id=webhook_id)
    note(receipt, call="alerting.destinations.webhooks", target=name, answer=webhook_id)


def _connect_policies(conn: PushConnection, receipt: _Receipt) -> None:
    names = _names(conn.url)
    priority = cf.Priority.INTERACTIVE
    policies = {p.name: p.id for p in cf.notification_policies(priority=priority)}
    for alert_type, field_name in ((HEALTH, "health_policy_id"), (UPDATE, "update_policy_id")):
        known = {getattr(conn, field_name), policies.get(names[alert_type], "")} & set(policies.values())
        policy_id = cf.notification_policy_save(
            name=names[alert_type],
            alert_type=alert_type,
            webhook_id=conn.destination_id,
            policy_id=min(known, default=""),
            priority=priority,
        )
        _save(conn, **{field_name: policy_id})
        note(receipt, call="alerting.policies", target=names[alert_type], answer=policy_id)


# Disconnecting deletes the recorded ids and anything else carrying the mark; what is already gone is fine.


def _disconnect_policies(conn: PushConnection, receipt: _Receipt) -> None:
    priority = cf.Priority.INTERACTIVE
    m = mark(conn.url)
    policy_ids = {conn.health_policy_id, conn.update_policy_id} | {
        p.id for p in cf.notification_policies(priority=priority) if p.name.startswith(m)
    }
    removed = sorted(policy_ids - {""})
    for policy_id in removed:
        with contextlib.suppress(cf.CloudflareNotFound):
            cf.notification_policy_delete(policy_id, priority=priority)
        note(receipt, call="alerting.policies.delete", target=policy_id, answer="deleted")
    _save(conn, health_policy_id="", update_policy_id="")
    receipt.run.data["policies"] = sorted({*receipt.run.data.get("policies", []), *removed})


def _disconnect_destination(conn: PushConnection, receipt: _Receipt) -> None:
    priority = cf.Priority.INTERACTIVE
    m = mark(conn.url)
    webhook_ids = {conn.destination_id} | {
        d.id for d in cf.webhook_destinations(priority=priority) if d.name.startswith(m)
    }
    removed = sorted(webhook_ids - {""})
    for webhook_id in removed:
        with contextlib.suppress(cf.CloudflareNotFound):
            cf.webhook_destination_delete(webhook_id, priority=priority)
        note(receipt, call="alerting.destinations.webhooks.delete", target=webhook_id, answer="deleted")
    _save(conn, destination_id="")
    receipt.run.data["destinations"] = sorted({*receipt.run.data.get("destinations", []), *removed})


def _disconnect_bypass(conn: PushConnection, receipt: _Receipt) -> None:
    names = _names(conn.url)
    priority = cf.Priority.INTERACTIVE
    app_ids = {conn.bypass_app_id} | {a.id for a in cf.access_apps_named(names["bypass_app"])}
    for app_id in sorted(app_ids - {""}):
        cf.access_private_app_delete(app_id=app_id, owner_mark=mark(conn.url))
        note(receipt, call="access.apps.delete", target=app_id, answer="deleted")
    _save(conn, bypass_app_id="")
    bypass_ids = {conn.bypass_policy_id} | {
        p.id for p in cf.access_policies_all(priority=priority) if p.name == names["bypass_policy"]
    }
    for policy_id in sorted(bypass_ids - {""}):
        with contextlib.suppress(cf.CloudflareNotFound):
            cf.access_policy_delete(policy_id, priority=priority)
        note(receipt, call="access.policies.delete", target=policy_id, answer="deleted")
    _save(conn, bypass_policy_id="")


_CONNECT = {"bypass": _connect_bypass, "destination": _connect_destination, "policies": _connect_policies}
_DISCONNECT = {"policies": _disconnect_policies, "destination": _disconnect_destination, "bypass": _disconnect_bypass}


# --- receiving ------------------------------------------------------------------------------------------------


def webhook_secret() -> str | None:
    """The secret Cloudflare must present, while a connection is being made or holds; None otherwise."""
    conn = PushConnection.objects.filter(pk=1).exclude(state=PushConnection.State.OFF).first()
    if conn is None or not conn.secret_sealed:
        return None
    return unseal(conn.secret_sealed, purpose=Purpose.PUSH_WEBHOOK)


class _RefusalTally:
    """Refused webhook posts, counted in this process and written to the connection in batches.

    A flood of bad posts must not cost a database write each. The first refusal after a quiet interval
    (GATEHOUSE_PUSH_REFUSAL_FLUSH_SECONDS) is written at once; those arriving within the interval are added up
    here and written together when it ends (a timer), or when the process exits. The count on Settings is
    therefore late by at most one interval, never lower once it has passed.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._pending = 0
        self._last_at: datetime | None = None
        self._quiet_from = 0.0  # monotonic time from which the next refusal is written at once
        self._timer: threading.Timer | None = None

    def add(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._pending += 1
            self._last_at = timezone.now()
            if now < self._quiet_from:
                if self._timer is None:
                    self._timer = threading.Timer(self._quiet_from - now, self._flush_in_thread)
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._quiet_from = now + settings.GATEHOUSE_PUSH_REFUSAL_FLUSH_SECONDS
        self.flush()

    def flush(self) -> None:
        with self._lock:
            count, last_at = self._pending, self._last_at
            self._pending, self._last_at = 0, None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if not count:
            return
        try:
            PushConnection.objects.filter(pk=1).update(
                refused_count=F("refused_count") + count,
                last_refused_at=Greatest(Coalesce("last_refused_at", Value(last_at)), Value(last_at)),
            )
        except Exception:
            # Kept for the next write: a refused post is answered 401/403 whatever the database says.
            logger.exception("push: %d refused webhook posts could not be counted yet", count)
            with self._lock:
                self._pending += count
                self._last_at = max(filter(None, (self._last_at, last_at)))

    def forget(self) -> None:
        with self._lock:
            self._pending, self._last_at, self._quiet_from = 0, None, 0.0
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _flush_in_thread(self) -> None:
        try:
            self.flush()
        finally:
            db_connection.close()


_refusals = _RefusalTally()
atexit.register(_refusals.flush)


def refusal_record() -> None:
    """Counts one refused webhook post (see _RefusalTally: written in batches, not a write each)."""
    _refusals.add()


def refusals_flush() -> None:
    """Writes the refusals this process has counted but not yet written."""
    _refusals.flush()


def refusals_forget() -> None:
    """Drops what this process holds back and starts a quiet interval (for tests: each starts from nothing)."""
    _refusals.forget()


@dataclass(frozen=True)
class Notification:
    key: str
    alert_type: str
    sent_at: datetime
    tunnel_cf_id: uuid.UUID | None
    tunnel_name: str
    new_status: str
    event_type: str
    text: str


def parse_notification(body: bytes) -> Notification | None:
    """A notification (or Cloudflare's test message) in the webhook payload shape; None for anything else."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    text, ts, payload = data.get("text"), data.get("ts"), data.get("data")
    if not isinstance(text, str) or not isinstance(payload, dict):
        return None
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 < ts < 2**34:
        return None
    sent_at = datetime.fromtimestamp(ts, UTC)
    alert_type = data.get("alert_type")
    if alert_type is None:
        digest = hashlib.sha256(body).hexdigest()[:32]
        return Notification(f"{TEST}:{ts}:{digest}", TEST, sent_at, None, "", "", "", records.text(text, 300))
    correlation = data.get("alert_correlation_id")
    if alert_type not in (HEALTH, UPDATE) or not isinstance(correlation, str) or not _CORRELATION.match(correlation):
        return None
    try:
        tunnel_id = uuid.UUID(str(payload.get("tunnel_id")))
    except ValueError:
        return None
    status = _STATUS.match(str(payload.get("new_status", "")))
    event = _EVENT.match(str(payload.get("event_type", "")))
    if alert_type == HEALTH and status is None:
        return None
    return Notification(
        key=f"{alert_type}:{correlation}:{ts}:{tunnel_id}",
        alert_type=alert_type,
        sent_at=sent_at,
        tunnel_cf_id=tunnel_id,
        tunnel_name=records.text(payload.get("tunnel_name"), 255),
        new_status=status.group(1).lower() if status else "",
        event_type=event.group(1).lower() if event else "",
        text=records.text(text, 300),
    )


def event_receive(*, notification: Notification) -> bool:
    """Record the notification once and queue its tunnel's refresh; False when it had been received before."""
    from tunnels.tasks import push_refresh

    now = timezone.now()
    try:
        with transaction.atomic():
            event = PushEvent.objects.create(
                key=notification.key,
                received_at=now,
                alert_type=notification.alert_type,
                sent_at=notification.sent_at,
                tunnel_cf_id=notification.tunnel_cf_id,
                tunnel_name=notification.tunnel_name,
                new_status=notification.new_status,
                event_type=notification.event_type,
                text=notification.text,
            )
            if notification.alert_type != TEST:
                # Cloudflare is the caller, not a person: the sync's status list catches up if this is not sent.
                queue.send_on_commit(push_refresh, event.pk, unsent_message=None)
    except IntegrityError:
        return False
    PushEvent.objects.filter(received_at__lt=now - EVENT_KEEP).delete()
    return True


def refresh(*, event: PushEvent) -> None:
    """Bring one tunnel up to date after a notification: status as reported, then its connectors.

    A status older than the one Gatehouse holds (notifications can arrive out of order) is left alone. A tunnel
    Gatehouse does not know, a creation or a deletion makes the next pass read the whole list instead.
    """
    from tunnels import sync
    from tunnels.services import tunnel_alerts_evaluate

    tunnel = (
        Tunnel.objects.filter(cf_id=event.tunnel_cf_id, deleted_at__isnull=True).first() if event.tunnel_cf_id else None
    )
    if event.alert_type == UPDATE or tunnel is None:
        SyncCursor.objects.update_or_create(name="status", defaults={"synced_at": None})
        return
    now = timezone.now()
    at = min(event.sent_at or now, now)
    # Due until the read below succeeds: a refused call leaves the tunnel first in line for the next pass.
    fields: dict[str, Any] = {"connectors_due": True}
    with transaction.atomic():
        if event.new_status and event.new_status != tunnel.status and at >= tunnel.status_since:
            StatusChange.objects.create(tunnel=tunnel, at=at, old_status=tunnel.status, new_status=event.new_status)
            fields |= {
                "status": event.new_status,
                "status_rank": Tunnel.Status(event.new_status).rank,
                "status_since": at,
            }
        Tunnel.objects.filter(pk=tunnel.pk).update(**fields)
    tunnel.refresh_from_db()
    # The pass's own connector refresh, for this one tunnel.
    sync._sync_connectors(tunnel, now)
    tunnel_alerts_evaluate(now=timezone.now())


# --- reading ------------------------------------------------------------------------------------------------


def trusted(now: datetime) -> bool:
    """Push events are connected and arriving: the last one (or the test message) is recent enough to rely on."""
    if not PushConnection.objects.filter(pk=1, state=PushConnection.State.CONNECTED).exists():
        return False
    since = now - timedelta(seconds=settings.GATEHOUSE_PUSH_TRUST_SECONDS)
    return PushEvent.objects.filter(received_at__gte=since).exists()


def overview(now: datetime | None = None) -> dict[str, Any]:
    """What the Settings page shows: the connection, and whether notifications are arriving."""
    now = now or timezone.now()
    conn = connection()
    counts = PushEvent.objects.aggregate(
        hour=Count("pk", filter=Q(received_at__gte=now - timedelta(hours=1))),
        day=Count("pk", filter=Q(received_at__gte=now - timedelta(days=1))),
        health=Count("pk", filter=Q(received_at__gte=now - timedelta(days=1), alert_type=HEALTH)),
        update=Count("pk", filter=Q(received_at__gte=now - timedelta(days=1), alert_type=UPDATE)),
    )
    return {
        "conn": conn,
        "url": webhook_url(),
        "path": webhook_path(),
        "public_url_set": bool(settings.GATEHOUSE_PUBLIC_URL),
        "last_event": PushEvent.objects.order_by("-received_at").first(),
        "counts": counts,
        "trusted": trusted(now),
        "status_seconds": int(settings.GATEHOUSE_TUNNEL_PUSH_STATUS_SECONDS),
        "refusal_seconds": settings.GATEHOUSE_PUSH_REFUSAL_FLUSH_SECONDS,
        "names": _names(conn.url or webhook_url()),
        "change": conn.changes.prefetch_related("steps").first(),
    }
