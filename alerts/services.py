"""Writes for alerts: raising and resolving them, channels, and delivering messages to channels.

Other apps call alert_raise() and alert_resolve(); both are idempotent, so a periodic check may call them
on every pass.
"""

import base64
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from alerts import outbound
from alerts.models import Alert, Channel, Delivery
from dashboard import queue
from dashboard.models import User
from dashboard.requestinfo import RequestOrigin
from dashboard.sealing import Purpose, Unreadable, seal, unseal
from dashboard.services import audit_record
from integrations.records import text

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
_MAX_ERROR = 500


def alert_raise(
    *,
    kind: str,
    subject: str,
    body: str,
    target_type: str = "",
    target_id: str = "",
    target_label: str = "",
    dedupe_key: str = "",
) -> Alert:
    """Open an alert and tell every enabled channel, unless one with this dedupe key is already open."""
    if dedupe_key:
        existing = Alert.objects.filter(dedupe_key=dedupe_key, state=Alert.State.OPEN).first()
        if existing:
            return existing
    # Subjects and labels carry names from Cloudflare, AWS and logs: one line each, without bidirectional
    # overrides, so that one tunnel cannot be made to read like another in a page or a message.
    alert = Alert(
        kind=text(kind, 50),
        subject=text(subject, 200),
        body=_lines(body, 4000),
        target_type=text(target_type, 32),
        target_id=text(target_id, 64),
        target_label=text(target_label, 200),
        dedupe_key=dedupe_key[:200],
    )
    alert.full_clean(validate_constraints=False)
    try:
        with transaction.atomic():
            alert.save()
            _fan_out(alert, Delivery.Event.RAISED)
    except IntegrityError:
        # Another process opened the same alert a moment ago.
        return Alert.objects.get(dedupe_key=dedupe_key, state=Alert.State.OPEN)
    return alert


def alert_resolve(*, dedupe_key: str, body: str = "") -> Alert | None:
    """Close the open alert with this key and tell the channels; None when nothing was open."""
    if not dedupe_key:
        return None
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(dedupe_key=dedupe_key, state=Alert.State.OPEN).first()
        if alert is None:
            return None
        alert.state, alert.resolved_at, alert.resolution = Alert.State.RESOLVED, timezone.now(), _lines(body, 4000)
        alert.save(update_fields=["state", "resolved_at", "resolution"])
        _fan_out(alert, Delivery.Event.RESOLVED)
    return alert


def _lines(value: str, limit: int) -> str:
    return "\n".join(text(line, limit) for line in value.splitlines())[:limit]


def _silenced(alert: Alert) -> bool:
    """Silenced itself, or raised again while an earlier alert with its dedupe key is silenced."""
    if alert.is_silenced():
        return True
    if not alert.dedupe_key:
        return False
    return Alert.objects.filter(dedupe_key=alert.dedupe_key, silenced_until__gt=timezone.now()).exists()


NOTIFICATIONS_UNSENT = "Saved; its notifications were not sent (the queue is unreachable): retry them from the alert."
RETRY_UNSENT = "Not sent: the queue is unreachable. Retry once it is back."


def _not_sent(delivery_id: int):
    """A delivery whose task could not be sent is failed, so that it shows as not sent and can be retried: nothing
    else would send it."""

    def undo() -> None:
        Delivery.objects.filter(pk=delivery_id, state=Delivery.State.PENDING).update(
            state=Delivery.State.FAILED, last_error="Not sent: the queue was unreachable."
        )

    return undo


def _fan_out(alert: Alert, event: str) -> None:
    from alerts.tasks import deliver

    if _silenced(alert):
        return
    channels = list(Channel.objects.filter(enabled=True))
    deliveries = Delivery.objects.bulk_create([Delivery(alert=alert, channel=c, event=event) for c in channels])
    for delivery in deliveries:
        queue.send_on_commit(
            deliver, delivery.pk, unsent_message=NOTIFICATIONS_UNSENT, if_unsent=_not_sent(delivery.pk)
        )


@dataclass(frozen=True)
class NewChannel:
    channel: Channel
    secret: str  # a JSON webhook's signing secret, to be shown once; "" for other kinds


def channel_create(*, actor: User, name: str, kind: str, target: str, request_origin: RequestOrigin) -> NewChannel:
    channel = Channel(name=name, kind=kind, target=target.strip(), created_by=actor)
    channel.full_clean()
    secret = ""
    if kind == Channel.Kind.WEBHOOK:
        # Standard Webhooks secrets: "whsec_" and the base64 of the key's bytes.
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        channel.secret_sealed = seal(secret, purpose=Purpose.ALERT_WEBHOOK)
    with transaction.atomic():
        channel.save()
        audit_record(
            action="alert_channel.created",
            actor=actor,
            target_type="alert_channel",
            target_id=str(channel.public_id),
            target_label=channel.name,
            # The target may carry a webhook secret in its path; record only its kind.
            details={"kind": kind},
            request_origin=request_origin,
        )
    return NewChannel(channel, secret)


def channel_delete(*, actor: User, channel: Channel, request_origin: RequestOrigin) -> None:
    with transaction.atomic():
        audit_record(
            action="alert_channel.deleted",
            actor=actor,
            target_type="alert_channel",
            target_id=str(channel.public_id),
            target_label=channel.name,
            details={"kind": channel.kind},
            request_origin=request_origin,
        )
        channel.delete()


def delivery_retry(*, actor: User, delivery: Delivery, request_origin: RequestOrigin) -> Delivery:
    """Send a failed delivery again, with a fresh set of attempts."""
    from alerts.tasks import deliver

    with transaction.atomic():
        changed = Delivery.objects.filter(pk=delivery.pk, state=Delivery.State.FAILED).update(
            state=Delivery.State.PENDING, attempts=0
        )
        if changed:
            audit_record(
                action="alert_delivery.retried",
                actor=actor,
                target_type="alert",
                target_id=str(delivery.alert.public_id),
                target_label=delivery.alert.subject,
                details={"channel": delivery.channel.name},
                request_origin=request_origin,
            )
            queue.send_on_commit(deliver, delivery.pk, unsent_message=RETRY_UNSENT, if_unsent=_not_sent(delivery.pk))
    delivery.refresh_from_db()
    return delivery


class DeliveryError(Exception):
    pass


@dataclass(frozen=True)
class Attempt:
    delivery: Delivery
    retry: bool  # True: try again later


def delivery_attempt(*, delivery_id: int) -> Attempt | None:
    """Send one delivery once. Sent and given-up deliveries are left alone, so running this twice is safe."""
    delivery = Delivery.objects.select_related("alert", "channel").filter(pk=delivery_id).first()
    if delivery is None or delivery.state in (Delivery.State.SENT, Delivery.State.FAILED):
        return None
    try:
        _send(delivery)
    except DeliveryError as exc:
        delivery.attempts += 1
        delivery.last_error = str(exc)[:_MAX_ERROR]
        delivery.state = Delivery.State.FAILED if delivery.attempts >= MAX_ATTEMPTS else Delivery.State.RETRYING
        delivery.save(update_fields=["attempts", "last_error", "state"])
        log.warning("alert delivery %s to channel %s failed: %s", delivery.pk, delivery.channel_id, exc)
        return Attempt(delivery, retry=delivery.state == Delivery.State.RETRYING)
    delivery.attempts += 1
    delivery.state, delivery.sent_at, delivery.last_error = Delivery.State.SENT, timezone.now(), ""
    delivery.save(update_fields=["attempts", "state", "sent_at", "last_error"])
    return Attempt(delivery, retry=False)


def _words(alert: Alert, event: str) -> tuple[str, str]:
    prefix = "Resolved" if event == Delivery.Event.RESOLVED else "Alert"
    subject = f"[Gatehouse] {prefix}: {alert.subject}"
    body = alert.resolution if event == Delivery.Event.RESOLVED and alert.resolution else alert.body
    return subject, body


def slack_escape(value: str) -> str:
    """Slack's three control characters as its entities, so a name like <!channel> is shown, not obeyed."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sign(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks signature header value: HMAC-SHA256 over "id.timestamp.body", base64, as v1."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def _send(delivery: Delivery) -> None:
    channel, alert, event = delivery.channel, delivery.alert, delivery.event
    subject, body = _words(alert, event)
    if channel.kind == Channel.Kind.EMAIL:
        recipients = [a.strip() for a in channel.target.split(",") if a.strip()]
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
        except Exception as exc:
            raise DeliveryError(f"mail not sent: {type(exc).__name__}: {exc}") from exc
        return
    headers = {"Content-Type": "application/json", "User-Agent": "Gatehouse"}
    payload: dict[str, Any]
    if channel.kind == Channel.Kind.SLACK:
        payload = {"text": f"*{slack_escape(subject)}*\n{slack_escape(body)}"}
    else:
        payload = {
            "event": event,
            "alert": {
                "id": str(alert.public_id),
                "kind": alert.kind,
                "state": alert.state,
                "subject": alert.subject,
                "body": body,
                "target": {"type": alert.target_type, "id": alert.target_id, "label": alert.target_label},
                "raised_at": alert.raised_at.isoformat(),
                "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            },
        }
    content = json.dumps(payload).encode()
    if channel.secret_sealed:
        # The delivery's id is the message id: a receiver sees the same id on every retry and can drop repeats.
        message_id, timestamp = f"msg_{delivery.public_id.hex}", int(timezone.now().timestamp())
        try:
            secret = unseal(channel.secret_sealed, purpose=Purpose.ALERT_WEBHOOK)
        except Unreadable:
            raise DeliveryError("signing secret unreadable (was SECRET_KEY changed?); add the channel again") from None
        headers |= {
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret=secret, message_id=message_id, timestamp=timestamp, body=content),
        }
    try:
        response = outbound.post(channel.target, content=content, headers=headers)
    except outbound.OutboundRefused as exc:
        raise DeliveryError(f"refused: {exc}") from exc
    except httpx.HTTPError as exc:
        raise DeliveryError(f"no answer: {type(exc).__name__}") from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"HTTP {response.status_code}")


# --- acknowledging and silencing ----------------------------------------------------------------------------

SILENCE_CHOICES = {1: "1 hour", 4: "4 hours", 24: "1 day", 168: "1 week"}


def alert_acknowledge(*, actor: User, alert: Alert, request_origin: RequestOrigin) -> Alert:
    """Say someone is on it; acknowledging twice keeps the first person and time."""
    _operator_only(actor)
    with transaction.atomic():
        changed = Alert.objects.filter(pk=alert.pk, state=Alert.State.OPEN, acknowledged_at__isnull=True).update(
            acknowledged_at=timezone.now(), acknowledged_by=actor
        )
        if changed:
            _audit_alert(
                action="alert.acknowledged", actor=actor, alert=alert, details={}, request_origin=request_origin
            )
    alert.refresh_from_db()
    return alert


def alert_silence(*, actor: User, alert: Alert, hours: int, request_origin: RequestOrigin) -> Alert:
    """Send nothing about this alert, or about it being raised again, for `hours` hours (0 lifts the silence)."""
    _operator_only(actor)
    if hours != 0 and hours not in SILENCE_CHOICES:
        raise ValidationError({"hours": "Choose one of the offered durations."})
    with transaction.atomic():
        if hours:
            Alert.objects.filter(pk=alert.pk).update(silenced_until=timezone.now() + timedelta(hours=hours))
            _audit_alert(
                action="alert.silenced",
                actor=actor,
                alert=alert,
                details={"hours": hours},
                request_origin=request_origin,
            )
        else:
            # Lifting the silence lifts it for the key, also where it was set on an earlier alert.
            silenced = Alert.objects.filter(silenced_until__isnull=False)
            silenced = (
                silenced.filter(dedupe_key=alert.dedupe_key) if alert.dedupe_key else silenced.filter(pk=alert.pk)
            )
            if silenced.update(silenced_until=None):
                _audit_alert(
                    action="alert.unsilenced", actor=actor, alert=alert, details={}, request_origin=request_origin
                )
    alert.refresh_from_db()
    return alert


def _operator_only(actor: User) -> None:
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators and admins acknowledge or silence alerts.")


def _audit_alert(*, action: str, actor: User, alert: Alert, details: dict, request_origin: RequestOrigin) -> None:
    audit_record(
        action=action,
        actor=actor,
        target_type="alert",
        target_id=str(alert.public_id),
        target_label=alert.subject,
        details=details,
        request_origin=request_origin,
    )
