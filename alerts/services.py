"""Writes for alerts: raising and resolving them, channels, and delivering messages to channels.

Other apps call alert_raise() and alert_resolve(); both are idempotent, so a periodic check may call them
on every pass.
"""

import logging
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from alerts.models import Alert, Channel, Delivery
from dashboard.models import User
from dashboard.requestinfo import Origin
from dashboard.services import audit_record

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
    alert = Alert(
        kind=kind[:50],
        subject=subject[:200],
        body=body[:4000],
        target_type=target_type[:32],
        target_id=str(target_id)[:64],
        target_label=target_label[:200],
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
        alert.state, alert.resolved_at, alert.resolution = Alert.State.RESOLVED, timezone.now(), body[:4000]
        alert.save(update_fields=["state", "resolved_at", "resolution"])
        _fan_out(alert, Delivery.Event.RESOLVED)
    return alert


def _fan_out(alert: Alert, event: str) -> None:
    from alerts.tasks import deliver

    channels = list(Channel.objects.filter(enabled=True))
    deliveries = Delivery.objects.bulk_create([Delivery(alert=alert, channel=c, event=event) for c in channels])
    for delivery in deliveries:
        deliver.delay_on_commit(delivery.pk)


def channel_create(*, actor: User, name: str, kind: str, target: str, origin: Origin) -> Channel:
    channel = Channel(name=name, kind=kind, target=target.strip(), created_by=actor)
    channel.full_clean()
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
            origin=origin,
        )
    return channel


def channel_delete(*, actor: User, channel: Channel, origin: Origin) -> None:
    with transaction.atomic():
        audit_record(
            action="alert_channel.deleted",
            actor=actor,
            target_type="alert_channel",
            target_id=str(channel.public_id),
            target_label=channel.name,
            details={"kind": channel.kind},
            origin=origin,
        )
        channel.delete()


def delivery_retry(*, actor: User, delivery: Delivery, origin: Origin) -> Delivery:
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
                origin=origin,
            )
            deliver.delay_on_commit(delivery.pk)
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
        _send(delivery.channel, delivery.alert, delivery.event)
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


def _send(channel: Channel, alert: Alert, event: str) -> None:
    subject, body = _words(alert, event)
    if channel.kind == Channel.Kind.EMAIL:
        recipients = [a.strip() for a in channel.target.split(",") if a.strip()]
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
        except Exception as exc:
            raise DeliveryError(f"mail not sent: {type(exc).__name__}: {exc}") from exc
        return
    if channel.kind == Channel.Kind.SLACK:
        payload = {"text": f"*{subject}*\n{body}"}
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
    try:
        response = httpx.post(channel.target, json=payload, timeout=10.0, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"no answer: {type(exc).__name__}") from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"HTTP {response.status_code}")


def validate_channel(kind: str, target: str) -> None:
    """Raise ValidationError on the target field; the model's clean() calls this."""
    from django.core.validators import EmailValidator, URLValidator

    if kind == Channel.Kind.EMAIL:
        addresses = [a.strip() for a in target.split(",") if a.strip()]
        if not addresses:
            raise ValidationError({"target": "Give at least one email address."})
        for address in addresses:
            try:
                EmailValidator()(address)
            except ValidationError:
                raise ValidationError({"target": f"{address[:100]} is not an email address."}) from None
    else:
        try:
            URLValidator(schemes=["http", "https"])(target)
        except ValidationError:
            raise ValidationError({"target": "Give an http:// or https:// URL."}) from None
