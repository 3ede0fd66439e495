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

import contextlib
import hashlib
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.urls import reverse
from django.utils import timezone

from dashboard import queue
from dashboard.models import User
from dashboard.requestinfo import RequestOrigin
from dashboard.sealing import Purpose, seal, unseal
from dashboard.services import audit_record
from integrations import cloudflare as cf
from integrations import records
from tunnels.models import PushConnection, PushEvent, StatusChange, SyncCursor, Tunnel

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
}


class PushError(Exception):
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


# --- connecting and disconnecting (a click; the work runs in a Celery task) -----------------------------------


def push_connect(*, actor: User, access_bypass: bool, request_origin: RequestOrigin | None = None) -> PushConnection:
    """Start connecting: a fresh secret is sealed and saved first, so Cloudflare's test message is answered."""
    from tunnels.tasks import push_connect_run

    url = webhook_url()
    if not url:
        raise PushError("Set GATEHOUSE_PUBLIC_URL to the address Cloudflare can reach Gatehouse at, then connect.")
    with transaction.atomic():
        conn = PushConnection.objects.select_for_update().get(pk=connection().pk)
        if conn.state in (PushConnection.State.CONNECTING, PushConnection.State.DISCONNECTING):
            raise PushError("Gatehouse is already changing the push connection; wait for it to finish.")
        if conn.state == PushConnection.State.CONNECTED and conn.url == url and conn.bypass_wanted == access_bypass:
            raise PushError("Push events are already connected.")
        conn.state = PushConnection.State.CONNECTING
        conn.secret_sealed = seal(secrets.token_urlsafe(32), purpose=Purpose.PUSH_WEBHOOK)
        conn.url, conn.bypass_wanted, conn.error, conn.changed_at = url, access_bypass, "", timezone.now()
        conn.save()
        audit_record(
            action="push.connect_requested",
            actor=actor,
            target_type="push",
            target_label=url,
            details={"url": url, "access_bypass": access_bypass},
            request_origin=request_origin,
        )
        queue.send_on_commit(push_connect_run, unsent_message=NOT_STARTED, if_unsent=_not_started(conn.state))
    return conn


def push_disconnect(*, actor: User, request_origin: RequestOrigin | None = None) -> PushConnection:
    from tunnels.tasks import push_disconnect_run

    with transaction.atomic():
        conn = PushConnection.objects.select_for_update().get(pk=connection().pk)
        if conn.state in (PushConnection.State.OFF, PushConnection.State.DISCONNECTING):
            raise PushError("Push events are not connected.")
        conn.state, conn.error, conn.changed_at = PushConnection.State.DISCONNECTING, "", timezone.now()
        conn.save(update_fields=["state", "error", "changed_at"])
        audit_record(
            action="push.disconnect_requested",
            actor=actor,
            target_type="push",
            target_label=conn.url,
            request_origin=request_origin,
        )
        queue.send_on_commit(push_disconnect_run, unsent_message=NOT_STARTED, if_unsent=_not_started(conn.state))
    return conn


NOT_STARTED = "Not started: the queue is unreachable. Try again once it is back."


def _not_started(state: str):
    """What a connect or disconnect that could not be sent to a worker leaves: a failure to try again from, since
    nothing else would send it (the waiting state would refuse every later attempt)."""

    def undo() -> None:
        PushConnection.objects.filter(pk=connection().pk, state=state).update(
            state=PushConnection.State.FAILED, error=NOT_STARTED, changed_at=timezone.now()
        )

    return undo


def _save(conn: PushConnection, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(conn, name, value)
    conn.save(update_fields=list(fields))


def connect_execute(*, conn: PushConnection) -> None:
    """Create (or find and update) what push events need at Cloudflare, recording each id as soon as it exists.

    A CloudflareTransient propagates for the task to retry; any other refusal fails the connection visibly.
    """
    names = _names(conn.url)
    secret = unseal(conn.secret_sealed, purpose=Purpose.PUSH_WEBHOOK)
    priority = cf.Priority.INTERACTIVE
    try:
        if conn.bypass_wanted:
            _bypass_ensure(conn, names)
        # An object found by id or by its name is updated; one deleted at Cloudflare meanwhile is created again.
        existing = {d.name: d.id for d in cf.webhook_destinations(priority=priority)}
        known = {conn.destination_id, existing.get(names["destination"], "")} & set(existing.values())
        webhook_id = cf.webhook_destination_save(
            name=names["destination"],
            url=conn.url,
            secret=secret,
            webhook_id=min(known, default=""),
            priority=priority,
        )
        _save(conn, destination_id=webhook_id)
        policies = {p.name: p.id for p in cf.notification_policies(priority=priority)}
        for alert_type, field in ((HEALTH, "health_policy_id"), (UPDATE, "update_policy_id")):
            known = {getattr(conn, field), policies.get(names[alert_type], "")} & set(policies.values())
            policy_id = cf.notification_policy_save(
                name=names[alert_type],
                alert_type=alert_type,
                webhook_id=webhook_id,
                policy_id=min(known, default=""),
                priority=priority,
            )
            _save(conn, **{field: policy_id})
    except cf.CloudflareTransient:
        raise
    except cf.CloudflareError as exc:
        _save(conn, state=PushConnection.State.FAILED, error=exc.message[:500], changed_at=timezone.now())
        audit_record(
            action="push.connect_failed", target_type="push", target_label=conn.url, details={"error": exc.message}
        )
        return
    now = timezone.now()
    _save(conn, state=PushConnection.State.CONNECTED, connected_at=now, changed_at=now)
    audit_record(
        action="push.connected",
        target_type="push",
        target_label=conn.url,
        details={
            "destination": conn.destination_id,
            "policies": [conn.health_policy_id, conn.update_policy_id],
            "access_bypass": conn.bypass_app_id or "",
        },
    )


def _bypass_ensure(conn: PushConnection, names: dict[str, str]) -> None:
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
    if not conn.bypass_app_id:
        found_apps = cf.access_apps_named(names["bypass_app"])
        app = found_apps[0] if found_apps else None
        if app is None:
            app = cf.access_bypass_app_create(name=names["bypass_app"], domain=domain, policy_id=conn.bypass_policy_id)
        _save(conn, bypass_app_id=app.id)


def disconnect_execute(*, conn: PushConnection) -> None:
    """Delete what Gatehouse created for push events: the recorded ids, and anything else carrying its mark."""
    names = _names(conn.url)
    m = mark(conn.url)
    priority = cf.Priority.INTERACTIVE
    policy_ids = {conn.health_policy_id, conn.update_policy_id} | {
        p.id for p in cf.notification_policies(priority=priority) if p.name.startswith(m)
    }
    for policy_id in sorted(policy_ids - {""}):
        cf.notification_policy_delete(policy_id, priority=priority)
    webhook_ids = {conn.destination_id} | {
        d.id for d in cf.webhook_destinations(priority=priority) if d.name.startswith(m)
    }
    for webhook_id in sorted(webhook_ids - {""}):
        cf.webhook_destination_delete(webhook_id, priority=priority)
    app_ids = {conn.bypass_app_id} | {a.id for a in cf.access_apps_named(names["bypass_app"])}
    for app_id in sorted(app_ids - {""}):
        cf.access_private_app_delete(app_id=app_id, owner_mark=m)
    bypass_ids = {conn.bypass_policy_id} | {
        p.id for p in cf.access_policies_all(priority=priority) if p.name == names["bypass_policy"]
    }
    for policy_id in sorted(bypass_ids - {""}):
        with contextlib.suppress(cf.CloudflareNotFound):
            cf.access_policy_delete(policy_id, priority=priority)
    removed = {"policies": sorted(policy_ids - {""}), "destinations": sorted(webhook_ids - {""})}
    url = conn.url
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
        changed_at=timezone.now(),
    )
    audit_record(action="push.disconnected", target_type="push", target_label=url, details=removed)


def fail(*, conn: PushConnection, reason: str) -> None:
    _save(conn, state=PushConnection.State.FAILED, error=reason[:500], changed_at=timezone.now())
    audit_record(action="push.connect_failed", target_type="push", target_label=conn.url, details={"error": reason})


# --- receiving ------------------------------------------------------------------------------------------------


def webhook_secret() -> str | None:
    """The secret Cloudflare must present, while a connection is being made or holds; None otherwise."""
    conn = PushConnection.objects.filter(pk=1).exclude(state=PushConnection.State.OFF).first()
    if conn is None or not conn.secret_sealed:
        return None
    return unseal(conn.secret_sealed, purpose=Purpose.PUSH_WEBHOOK)


def refusal_record() -> None:
    PushConnection.objects.filter(pk=1).update(refused_count=F("refused_count") + 1, last_refused_at=timezone.now())


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

    tunnel = Tunnel.objects.filter(cf_id=event.tunnel_cf_id, deleted_at__isnull=True).first()
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
        "names": _names(conn.url or webhook_url()),
    }
