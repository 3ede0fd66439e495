"""Alerts Gatehouse raised, the channels it tells people through, and every delivery attempt."""

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from alerts import outbound
from dashboard.choices import ChoiceField, ColouredChoices


class Channel(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "JSON webhook"
        SLACK = "slack", "Slack incoming webhook"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # Email addresses (comma-separated) or a URL. A webhook URL is a secret of sorts: shown only to admins.
    target = models.CharField(max_length=1000)
    enabled = models.BooleanField(default=True)
    # A JSON webhook's signing secret (whsec_...), encrypted; shown to the admin once, when the channel is added.
    secret_sealed = models.TextField(blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        """Raise ValidationError on the target field: email addresses, or an http(s) URL outbound may reach."""
        target = self.target.strip()
        if self.kind == Channel.Kind.EMAIL:
            addresses = [a.strip() for a in target.split(",") if a.strip()]
            if not addresses:
                raise ValidationError({"target": "Give at least one email address."})
            for address in addresses:
                try:
                    EmailValidator()(address)
                except ValidationError:
                    raise ValidationError({"target": f"{address[:100]} is not an email address."}) from None
            return
        try:
            URLValidator(schemes=["http", "https"])(target)
        except ValidationError:
            raise ValidationError({"target": "Give an http:// or https:// URL."}) from None
        # Names are resolved, and checked again, at every delivery; an address or localhost is refused right away.
        try:
            outbound.check_url(target)
        except outbound.OutboundRefused as exc:
            raise ValidationError({"target": f"Refused: {exc}."}) from None


class Alert(models.Model):
    class State(ColouredChoices):
        OPEN = "open", "Open", "red"
        RESOLVED = "resolved", "Resolved", "green"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=50, db_index=True)
    subject = models.CharField(max_length=200)
    body = models.TextField(max_length=4000, blank=True)
    target_type = models.CharField(max_length=32, blank=True)
    target_id = models.CharField(max_length=64, blank=True, db_index=True)
    target_label = models.CharField(max_length=200, blank=True)
    dedupe_key = models.CharField(max_length=200, blank=True)
    state = ChoiceField(State, max_length=10, default=State.OPEN)
    raised_at = models.DateTimeField(default=timezone.now, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(max_length=4000, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Until then, neither this alert nor a new one with the same dedupe key is sent to any channel.
    silenced_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-raised_at", "-id"]
        constraints = [
            # At most one open alert per dedupe key: raising again while open is the same alert.
            models.UniqueConstraint(
                fields=["dedupe_key"],
                condition=Q(state="open") & ~Q(dedupe_key=""),
                name="alert_one_open_per_dedupe_key",
            )
        ]

    def __str__(self):
        return self.subject

    def is_silenced(self) -> bool:
        return self.silenced_until is not None and self.silenced_until > timezone.now()


class Delivery(models.Model):
    """One message about one alert event to one channel; retried with backoff until sent or given up."""

    class Event(models.TextChoices):
        RAISED = "raised", "Raised"
        RESOLVED = "resolved", "Resolved"

    class State(ColouredChoices):
        PENDING = "pending", "Pending", "blue"
        RETRYING = "retrying", "Retrying", "amber"
        SENT = "sent", "Sent", "green"
        FAILED = "failed", "Failed", "red"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=10, choices=Event.choices)
    state = ChoiceField(State, max_length=10, default=State.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["alert", "channel", "event"], name="delivery_once_per_event")]

    def __str__(self):
        return f"{self.alert} → {self.channel} ({self.event})"

    @property
    def summary(self) -> str:
        """The event, the attempts and the last error, in one line for the delivery's tooltip."""
        error = f" · {self.last_error}" if self.last_error else ""
        return f"{self.get_event_display()} · {self.attempts} attempt(s){error}"
