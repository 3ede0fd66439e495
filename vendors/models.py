"""Vendors, what they are granted, and the workflows that give and take their access at Cloudflare."""

import re
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.db.models import Q
from django.utils import timezone

from dashboard.choices import ChoiceField, ColouredChoices
from dashboard.operations import Operation, OperationStep

# Objects Gatehouse creates at Cloudflare carry this prefix and the vendor's id: the deterministic name is how a
# restarted step finds what an interrupted one created, and the prefix is how Gatehouse knows it owns the object.
MANAGED_PREFIX = "gatehouse-vendor-"

DOMAIN_RE = re.compile(r"^(?=.{4,253}\Z)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\Z")
DURATION_RE = re.compile(r"^(?:\d+h)?(?:\d+m)?\Z")
# Consumer mail providers: a domain rule for one of these admits anyone who opens a free account.
CONSUMER_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.com",
        "gmx.de",
        "mail.com",
        "yandex.com",
        "qq.com",
        "163.com",
    }
)
# Cloudflare Access offers session lengths from 15 minutes up to a month.
MIN_SESSION = timedelta(minutes=15)
MAX_SESSION = timedelta(hours=730)


def parse_session(value: str) -> timedelta:
    """'8h', '30m', '1h30m' as a timedelta; ValidationError for anything else or outside Cloudflare's range."""
    value = (value or "").strip()
    if not value or not DURATION_RE.match(value):
        raise ValidationError("Write a session length like 8h, 30m or 1h30m.")
    hours = re.search(r"(\d+)h", value)
    minutes = re.search(r"(\d+)m", value)
    length = timedelta(hours=int(hours.group(1)) if hours else 0, minutes=int(minutes.group(1)) if minutes else 0)
    if not MIN_SESSION <= length <= MAX_SESSION:
        raise ValidationError("Cloudflare allows sessions from 15m to 730h (a month).")
    return length


def session_text(length: timedelta) -> str:
    """A session length written one way only (90m and 1h30m are both 1h30m), so equal lengths share a policy."""
    minutes = int(length.total_seconds()) // 60
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")


def validate_domain(value: str) -> None:
    if not DOMAIN_RE.match(value):
        raise ValidationError(f"{value!r} is not a domain name like example.com.", code="domain")


class VendorQuerySet(models.QuerySet):
    def past_review(self, today):
        return self.filter(review_due__lt=today, status__in=[Vendor.Status.ACTIVE, Vendor.Status.ONBOARDING])


class Vendor(models.Model):
    class Status(ColouredChoices):
        ONBOARDING = "onboarding", "Onboarding", "blue"
        ACTIVE = "active", "Active", "green"
        SUSPENDED = "suspended", "Suspended", "grey"
        REVOKING = "revoking", "Revoking", "amber"
        REVOKED = "revoked", "Revoked", "grey"
        NEEDS_ATTENTION = "needs_attention", "Needs attention", "red"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=120, unique=True)
    sponsor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="sponsored_vendors")
    contacts = models.JSONField(default=list, blank=True, help_text="Contact email addresses.")
    domains = models.JSONField(default=list, blank=True, help_text="Email domains admitted as a whole.")
    review_due = models.DateField()
    status = ChoiceField(Status, max_length=20, default=Status.ONBOARDING)
    status_reason = models.CharField(max_length=500, blank=True)
    # The review-due date the sponsor was last told about, so each overdue review is flagged once.
    review_flagged_for = models.DateField(null=True, blank=True)
    # The policy a vendor was adopted from, as it was named at Cloudflare before Gatehouse took it over.
    adopted_from = models.CharField(max_length=200, blank=True)
    # Off the main list; kept, with its history and receipts, but nothing more is done to it.
    archived_at = models.DateTimeField(null=True, blank=True)
    # What the last read-back found at Cloudflare that differs from what Gatehouse applied: a list of
    # {"subject", "expected", "found"} (and "token", a token's public id, when the token is gone).
    drift = models.JSONField(default=list, blank=True)
    drift_checked_at = models.DateTimeField(null=True, blank=True)
    drift_found_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = VendorQuerySet.as_manager()
    # The vendor list sets it on each vendor it shows: the run in progress, if any.
    active_run: "WorkflowRun | None"

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        errors: dict[str, list[str]] = {}
        contacts = [str(e).strip().lower() for e in self.contacts or []]
        for email in contacts:
            try:
                validate_email(email)
            except ValidationError:
                errors.setdefault("contacts", []).append(f"{email!r} is not an email address.")
        domains = [str(d).strip().lower() for d in self.domains or []]
        for domain in domains:
            try:
                validate_domain(domain)
            except ValidationError as error:
                errors.setdefault("domains", []).extend(error.messages)
        if not contacts and not domains:
            errors.setdefault("contacts", []).append("Give at least one contact email or email domain.")
        if errors:
            raise ValidationError(errors)
        self.contacts = sorted(set(contacts))
        self.domains = sorted(set(domains))

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    @property
    def policy_name(self) -> str:
        """The stem of the vendor's policy names; every policy named so, or with this stem and a dash, is its own."""
        return f"{MANAGED_PREFIX}{self.public_id}"

    def policy_name_for(self, session: str) -> str:
        """The Allow policy for the vendor's people on grants with this session length."""
        return f"{self.policy_name}-{session}"

    def service_policy_name_for(self, session: str) -> str:
        """The Service Auth policy for the vendor's service tokens on grants with this session length."""
        return f"{self.policy_name}-service-auth-{session}"

    def owns_policy_name(self, name: str) -> bool:
        return name == self.policy_name or name.startswith(self.policy_name + "-")

    @property
    def token_prefix(self) -> str:
        return f"{MANAGED_PREFIX}{self.public_id}-token-"

    def include_rules(self) -> list[dict]:
        return [{"email": {"email": e}} for e in self.contacts] + [
            {"email_domain": {"domain": d}} for d in self.domains
        ]

    def is_overdue(self, today=None) -> bool:
        return self.review_due < (today or timezone.localdate())


class AccessApplication(models.Model):
    """Gatehouse's copy of an Access application at Cloudflare, so forms can offer applications to grant."""

    cf_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=32)
    domain = models.CharField(max_length=300, blank=True)
    destinations = models.JSONField(default=list, blank=True)
    # Legacy policies that exist only on this application. Cloudflare refuses an application whose policy list
    # mixes them with reusable ones, so Gatehouse cannot attach a vendor's policy until they are converted.
    inline_policies = models.PositiveIntegerField(default=0)
    # The ids of the policies the application carries, as last read, so unmanaged ones can be shown with them.
    policy_ids = models.JSONField(default=list, blank=True)
    present = models.BooleanField(default=True)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def grantable(self) -> bool:
        return self.present and not self.inline_policies

    def not_grantable_reason(self) -> str:
        """Why a grant of this application is refused, naming what the admin must do at Cloudflare ("" if none)."""
        if not self.present:
            return f"{self.name} is no longer at Cloudflare."
        if self.inline_policies:
            return (
                f"{self.name} still has {self.inline_policies} application-scoped (legacy) "
                f"polic{'y' if self.inline_policies == 1 else 'ies'}, which Cloudflare does not combine with a "
                "vendor's reusable policy. At Cloudflare (Zero Trust → Access → Applications → "
                f"{self.name} → Policies), convert them to reusable policies, then refresh the applications here."
            )
        return ""

    def instructions(self) -> list[str]:
        """How a vendor's person reaches this application: a browser URL, or a cloudflared command for TCP."""
        lines = []
        for dest in self.destinations or []:
            if dest.get("type") == "public" and dest.get("uri"):
                lines.append(f"Open https://{dest['uri']} in a browser.")
            elif dest.get("type") == "private":
                port = str(dest.get("port_range") or "").split("-")[0]
                host = dest.get("hostname") or str(dest.get("cidr") or "").removesuffix("/32")
                if dest.get("hostname") and port:
                    lines.append(f"cloudflared access tcp --hostname {dest['hostname']} --url localhost:{port}")
                elif host:
                    lines.append(f"Connect with the Cloudflare WARP client to {host}{':' + port if port else ''}.")
        if not lines and self.domain:
            lines.append(f"Open https://{self.domain} in a browser.")
        return lines


class AccessPolicy(models.Model):
    """Gatehouse's copy of a reusable Access policy, read with the applications, so that those it does not own
    can be offered for adoption without asking Cloudflare on every page view."""

    cf_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    decision = models.CharField(max_length=32)
    include = models.JSONField(default=list, blank=True)
    exclude = models.JSONField(default=list, blank=True)
    require = models.JSONField(default=list, blank=True)
    session_duration = models.CharField(max_length=32, blank=True)
    present = models.BooleanField(default=True)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Grant(models.Model):
    class Status(ColouredChoices):
        SCHEDULED = "scheduled", "Starts later", "blue"
        ACTIVE = "active", "Active", "green"
        EXPIRED = "expired", "Expired", "grey"
        ENDED = "ended", "Ended", "grey"
        REVOKED = "revoked", "Revoked", "grey"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    vendor = models.ForeignKey(Vendor, on_delete=models.CASCADE, related_name="grants")
    application = models.ForeignKey(AccessApplication, on_delete=models.PROTECT, related_name="grants")
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    session_duration = models.CharField(max_length=16, default="8h")
    status = ChoiceField(Status, max_length=16, default=Status.ACTIVE)
    # The vendor's policies that admit through this grant: grants with the same session length share them, since a
    # reusable policy's session length holds on every application it is attached to.
    cf_policy_id = models.CharField(max_length=64, blank=True)
    cf_service_policy_id = models.CharField(max_length=64, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    expiry_notice_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["ends_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["vendor", "application"],
                condition=Q(status="active"),
                name="vendors_one_active_grant_per_application",
            )
        ]

    def __str__(self):
        return f"{self.vendor} → {self.application}"

    def clean(self):
        try:
            self.session_duration = session_text(parse_session(self.session_duration))
        except ValidationError as error:
            raise ValidationError({"session_duration": error.messages}) from None
        if self.ends_at and self.starts_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "The grant must end after it starts."})

    @property
    def policy_name(self) -> str:
        return self.vendor.policy_name_for(self.session_duration)

    @property
    def service_policy_name(self) -> str:
        return self.vendor.service_policy_name_for(self.session_duration)


class ServiceToken(models.Model):
    class Status(ColouredChoices):
        PENDING = "pending", "Being created", "blue"
        ACTIVE = "active", "Active", "green"
        DELETED = "deleted", "Deleted", "grey"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    vendor = models.ForeignKey(Vendor, on_delete=models.CASCADE, related_name="service_tokens")
    label = models.CharField(max_length=80)
    duration = models.CharField(max_length=16, default="8760h")
    status = ChoiceField(Status, max_length=16, default=Status.PENDING)
    cf_id = models.CharField(max_length=64, blank=True)
    client_id = models.CharField(max_length=200, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # The client secret, encrypted, between its creation and the one time someone reveals it; then emptied.
    secret_sealed = models.TextField(blank=True)
    # False for a token adopted from Cloudflare: its secret was given out before Gatehouse knew of it.
    secret_known = models.BooleanField(default=True)
    # When a rotation sealed a new secret (the token itself may be much older); unset, the token's creation counts.
    secret_sealed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    # The vendor page sets it on each token it shows: the rotation or refresh in progress, if any.
    active_change: "TokenChange | None"

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return self.label

    @property
    def cf_name(self) -> str:
        return f"{self.vendor.token_prefix}{self.public_id}"


class WorkflowRun(Operation):
    """One workflow on a vendor (see vendors.workflows): the shared operation row, for one vendor and kind."""

    class Kind(models.TextChoices):
        ONBOARD = "onboard", "Onboard"
        CHANGE = "change", "Apply changes"
        EXPIRE = "expire", "Expire grants"
        END_GRANT = "end_grant", "End a grant"
        ADOPT = "adopt", "Adopt"
        SUSPEND = "suspend", "Suspend"
        REVOKE = "revoke", "Revoke"

    vendor = models.ForeignKey(Vendor, on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=16, choices=Kind.choices)

    # One run per vendor at a time: the engine's rule for its subject (vendors.workflows.VendorWorkflows).
    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.get_kind_display()} {self.vendor}"


class WorkflowStep(OperationStep):
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="steps")

    class Meta:
        ordering = ["run", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "position"], name="vendors_step_position")]


class TokenChange(Operation):
    """A rotation or a refresh of one service token at Cloudflare (vendors.tokens): the shared operation row. A new
    secret is never on it: it is sealed on the token, for an operator to reveal once."""

    class Kind(models.TextChoices):
        ROTATE = "rotate", "Rotate secret"
        REFRESH = "refresh", "Extend expiry"

    token = models.ForeignKey(ServiceToken, on_delete=models.CASCADE, related_name="changes")
    kind = models.CharField(max_length=16, choices=Kind.choices)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.get_kind_display()} {self.token}"


class TokenChangeStep(OperationStep):
    run = models.ForeignKey(TokenChange, on_delete=models.CASCADE, related_name="steps")

    class Meta:
        ordering = ["run", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "position"], name="vendors_token_change_step_position")]


class VendorSettings(models.Model):
    """Account-wide choices for vendors, changed by admins."""

    auto_suspend_overdue = models.BooleanField(
        default=False, help_text="Suspend vendors automatically once their review is overdue."
    )

    def __str__(self):
        return "Vendor settings"

    @classmethod
    def load(cls) -> "VendorSettings":
        return cls.objects.get_or_create(pk=1)[0]
