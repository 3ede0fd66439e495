"""Origins on the private network, where Gatehouse learnt of them, and what people decided about them."""

import ipaddress
import uuid

from django.db import models
from django.utils import timezone

from dashboard.choices import ChoiceField, ColouredChoices
from dashboard.operations import Operation, OperationStep

# Bounds on what one origin row keeps from untrusted logs and inventories.
MAX_HOSTNAMES = 10
MAX_TOP_USERS = 10
MAX_CLOSE_REASONS = 16


def ip_key(address: str) -> str:
    """A fixed-width hex form of an IP that sorts like the address, so a CIDR filter is a range on an index.

    IPv4 is kept IPv4-mapped in IPv6 space; a hostname has no key.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    if ip.version == 4:
        ip = ipaddress.IPv6Address(f"::ffff:{ip}")
    return f"{int(ip):032x}"


class Protocol(models.TextChoices):
    TCP = "TCP", "TCP"
    UDP = "UDP", "UDP"
    ICMP = "ICMP", "ICMP"
    ICMPV6 = "ICMPV6", "ICMPv6"
    # An inventory entry that names a host but no service on it (an EC2 instance without a rule to a port).
    ANY = "ANY", "any"


class ReviewState(ColouredChoices):
    UNREVIEWED = "unreviewed", "Unreviewed", "grey"
    IN_REVIEW = "in_review", "In review", "blue"
    APPROVED = "approved", "Approved", "green"
    UNAPPROVED = "unapproved", "Unapproved", "red"


class Source(ColouredChoices):
    """Where Gatehouse has seen an origin: in Logpush traffic, in the AWS inventory, or both."""

    BOTH = "both", "both", "green"
    TRAFFIC = "traffic", "traffic", "amber"
    INVENTORY = "inventory", "inventory", "purple"


class Application(models.Model):
    """Origins that together make one service people use (a video service on tcp:443 and udp:10000)."""

    class Protection(ColouredChoices):
        NONE = "none", "Not protected", "grey"
        PENDING = "pending", "Applying to Access", "amber"
        PROTECTED = "protected", "Protected by Access", "green"
        FAILED = "failed", "Protection failed", "red"
        REMOVING = "removing", "Removing from Access", "amber"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True)
    owner = models.CharField(max_length=254, blank=True, help_text="Who answers for it: a person or a team.")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=254, blank=True)
    protection = ChoiceField(Protection, max_length=16, default=Protection.NONE)
    policy_id = models.CharField(max_length=64, blank=True)
    policy_name = models.CharField(max_length=200, blank=True)
    # The Access applications Gatehouse created for it, in part order: Cloudflare takes at most 50 destinations
    # on one application, so a larger one is split across several.
    access_app_ids = models.JSONField(default=list, blank=True)
    protection_error = models.CharField(max_length=300, blank=True)
    protected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def owner_mark(self) -> str:
        """What every Access application Gatehouse creates for this application carries in its name, through
        renames: the only ones Gatehouse will change or delete."""
        return f"(gatehouse {self.public_id.hex[:8]}"

    def access_name(self, part: int = 1) -> str:
        """The name of the Access application for one part: deterministic, so a retry finds its own work."""
        suffix = "" if part == 1 else f" part {part}"
        return f"{self.name} {self.owner_mark}{suffix})"


class ProtectionChange(Operation):
    """One change to what Access holds for an application (discovery.services.protection): the shared operation
    row. The application's `protection` says what it should hold; the change brings Cloudflare in line."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="protection_changes")
    # The application changed while this change was running: another change follows it, reading it afresh.
    again = models.BooleanField(default=False)

    # One change at a time per application, what is asked meanwhile folded into it: the engine's rule for its
    # subject (discovery.services.protection.ApplicationProtection).
    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Access change for {self.application}"


class ProtectionChangeStep(OperationStep):
    run = models.ForeignKey(ProtectionChange, on_delete=models.CASCADE, related_name="steps")

    class Meta:
        ordering = ["run", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "position"], name="discovery_protection_step_position")]


class Origin(models.Model):
    """A service on the private network: (virtual network, address, port, protocol)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # "" when the virtual network is not known (an inventory entry nobody has reached yet).
    vnet_id = models.CharField(max_length=36, blank=True)
    # A normalised IP, or a hostname for inventory entries that only have one (RDS, load balancers).
    address = models.CharField(max_length=253)
    ip_key = models.CharField(max_length=32, blank=True)
    port = models.PositiveIntegerField()
    protocol = models.CharField(max_length=8, choices=Protocol.choices)

    seen_in_traffic = models.BooleanField(default=False)
    seen_in_inventory = models.BooleanField(default=False)
    sessions = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    unreachable_sessions = models.BigIntegerField(default=0)
    # Distinct users: exact below the sketch size, estimated above it (see discovery.sketch).
    users = models.IntegerField(default=0)
    user_sketch = models.JSONField(default=list, blank=True)
    top_users = models.JSONField(default=dict, blank=True)
    hostnames = models.JSONField(default=list, blank=True)
    close_reasons = models.JSONField(default=dict, blank=True)
    tunnel_id = models.CharField(max_length=36, blank=True)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)

    inventory = models.JSONField(default=dict, blank=True)
    inventory_seen_at = models.DateTimeField(null=True, blank=True)

    review_state = ChoiceField(ReviewState, max_length=16, default=ReviewState.UNREVIEWED)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    application = models.ForeignKey(
        Application, null=True, blank=True, on_delete=models.SET_NULL, related_name="origins"
    )
    # Lower-case words the catalogue's free-text filter looks in (compute_search_text), through a trigram index:
    # pg_trgm on PostgreSQL, an FTS5 trigram table on SQLite (migration 0006); see SearchTextContains.
    search_text = models.CharField(max_length=1000, blank=True)
    # Set when traffic reaches an origin after it was unapproved; cleared when its review changes.
    traffic_while_unapproved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["vnet_id", "address", "port", "protocol"], name="origin_identity"),
        ]
        indexes = [
            # Keyset pagination: every sort column paired with the id that breaks ties.
            models.Index(fields=["users", "id"], name="origin_users_id"),
            models.Index(fields=["sessions", "id"], name="origin_sessions_id"),
            models.Index(fields=["bytes_total", "id"], name="origin_bytes_id"),
            models.Index(fields=["last_seen", "id"], name="origin_last_seen_id"),
            models.Index(fields=["review_state", "id"], name="origin_review_id"),
            models.Index(fields=["ip_key"], name="origin_ip_key"),
            models.Index(fields=["address"], name="origin_address"),
            models.Index(fields=["port", "protocol"], name="origin_port_protocol"),
        ]

    def __str__(self):
        return self.label

    @property
    def label(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        if self.protocol in (Protocol.ICMP, Protocol.ICMPV6, Protocol.ANY):
            return f"{host} {self.get_protocol_display()}"
        return f"{host}:{self.port}/{self.protocol.lower()}"

    def compute_search_text(self) -> str:
        """Everything the free-text filter finds an origin by: its address, network and tunnel ids first (so
        they survive the length cap), then hostnames and the inventory's name, id and tags."""
        inventory = self.inventory or {}
        words = [self.address, self.vnet_id, self.tunnel_id, *self.hostnames]
        words += [inventory.get("name", ""), inventory.get("id", "")]
        words += [f"{k}={v}" for k, v in (inventory.get("tags") or {}).items()]
        return " ".join(str(w).lower() for w in words if w)[:1000]

    @property
    def source(self) -> "Source":
        if self.seen_in_traffic and self.seen_in_inventory:
            return Source.BOTH
        return Source.TRAFFIC if self.seen_in_traffic else Source.INVENTORY

    @property
    def is_ip(self) -> bool:
        return bool(self.ip_key)


class SearchTextContains(models.Lookup):
    """``search_text__has``: the origins whose search text contains a string, answered from a trigram index.

    PostgreSQL answers LIKE '%...%' from the pg_trgm GIN index on the column. SQLite keeps the column in an FTS5
    table with the trigram tokenizer, kept in step by triggers, and a quoted phrase there is a substring match.
    Both match case-insensitively; a string shorter than a trigram is looked for by a plain LIKE on both.
    """

    lookup_name = "has"
    FTS_TABLE = "discovery_origin_search"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        text = str(self.rhs)
        if connection.vendor == "sqlite" and len(text) >= 3:
            quote = connection.ops.quote_name
            # The unary plus keeps SQLite walking the page's sort index and checking each row against the matches,
            # which costs the same for a rare word and for one in every third origin (sorting those would not).
            row_id = f"+{quote(self.lhs.alias)}.{quote('id')}"
            phrase = '"' + text.replace('"', '""') + '"'
            fts = quote(self.FTS_TABLE)
            return f"{row_id} IN (SELECT rowid FROM {fts} WHERE {fts} MATCH %s)", [phrase]  # noqa: S608
        pattern = "%" + connection.ops.prep_for_like_query(text) + "%"
        return f"{lhs} LIKE %s ESCAPE '\\'", [*lhs_params, pattern]


Origin._meta.get_field("search_text").register_lookup(SearchTextContains)


class OriginDaily(models.Model):
    """One origin's traffic on one UTC day, for its charts."""

    origin = models.ForeignKey(Origin, on_delete=models.CASCADE, related_name="days")
    day = models.DateField()
    sessions = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    users = models.IntegerField(default=0)
    user_sketch = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["origin", "day"], name="origin_daily_unique")]

    def __str__(self):
        return f"{self.origin_id} {self.day}"


class ReviewEvent(models.Model):
    """A change of an origin's review state: who, why, from and to. The origin page shows them."""

    origin = models.ForeignKey(Origin, on_delete=models.CASCADE, related_name="review_events")
    at = models.DateTimeField(default=timezone.now)
    actor_email = models.CharField(max_length=254, blank=True)
    from_state = models.CharField(max_length=16, choices=ReviewState.choices)
    to_state = models.CharField(max_length=16, choices=ReviewState.choices)
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.origin_id} {self.from_state} → {self.to_state}"


class IngestRun(models.Model):
    """One pass over the Logpush bucket, with what it accepted and what it refused, and why."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    source = models.CharField(max_length=500)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    listed = models.IntegerField(default=0)
    objects_done = models.IntegerField(default=0)
    records = models.BigIntegerField(default=0)
    accepted = models.BigIntegerField(default=0)
    malformed = models.BigIntegerField(default=0)
    wrong_type = models.BigIntegerField(default=0)
    absurd = models.BigIntegerField(default=0)
    public = models.BigIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    # Renewed while a task works on the pass (dashboard/leases.py); a pass nobody works on any more is ended with
    # LAPSED_REASON, and the objects it did not finish are read by the next pass.
    lease_until = models.DateTimeField(null=True, blank=True)

    LAPSED_REASON = "Its worker stopped before the pass finished; the next pass reads the objects it left."

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self):
        return f"{self.source} at {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def rejected(self) -> int:
        return self.malformed + self.wrong_type + self.absurd + self.public

    @staticmethod
    def work_in_flight(now) -> bool:
        """A worker is reading Logpush objects (its claims are live): the passes are not ended meanwhile."""
        return LogObject.objects.filter(state=LogObject.State.CLAIMED, lease_until__gt=now).exists()


class InventoryRun(models.Model):
    """One AWS inventory pass, with the kinds of resource it could not read and why (AWS's words, bounded)."""

    MAX_WARNINGS = 50

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    regions = models.JSONField(default=list, blank=True)
    origins = models.IntegerField(default=0)
    # [{"region", "kind", "action", "error"}], at most MAX_WARNINGS.
    warnings = models.JSONField(default=list, blank=True)
    # Why the pass did not finish, when it did not.
    error = models.CharField(max_length=300, blank=True)
    # Renewed while the pass runs (dashboard/leases.py); a pass whose worker stopped is ended with LAPSED_REASON.
    lease_until = models.DateTimeField(null=True, blank=True)

    LAPSED_REASON = "Its worker stopped before the pass finished; the next pass lists the estate again."

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self):
        return f"AWS inventory at {self.started_at:%Y-%m-%d %H:%M}"


class LogObject(models.Model):
    """One S3 object of Logpush output. Its counts apply to origins exactly once: in the transaction that marks
    it done, by the worker whose claim (a lease) is still the current one."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        CLAIMED = "claimed", "Being read"
        DONE = "done", "Done"

    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=1024)
    etag = models.CharField(max_length=200)
    size = models.BigIntegerField(default=0)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    claim_token = models.UUIDField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.IntegerField(default=0)
    run = models.ForeignKey(IngestRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="log_objects")
    records = models.BigIntegerField(default=0)
    accepted = models.BigIntegerField(default=0)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bucket", "key", "etag"], name="log_object_identity")]
        indexes = [models.Index(fields=["state", "lease_until"], name="log_object_state")]

    def __str__(self):
        return f"s3://{self.bucket}/{self.key}"


class AccessPolicy(models.Model):
    """A reusable Access policy as Cloudflare last listed it: what "Protect with Access" offers to attach."""

    cf_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    decision = models.CharField(max_length=32, blank=True)
    seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "access policies"

    def __str__(self):
        return self.name
