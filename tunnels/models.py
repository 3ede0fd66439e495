"""Tunnels as Gatehouse last saw them at Cloudflare, their status history, routes, and the changes people asked for.

Cloudflare ids (UUIDs) are the public identifiers: they are what admins see in Cloudflare's own dashboard.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from dashboard.choices import ChoiceField, ColouredChoices
from dashboard.operations import Operation, OperationStep


class Tunnel(models.Model):
    class Status(ColouredChoices):
        HEALTHY = "healthy", "Healthy", "green"
        DEGRADED = "degraded", "Degraded", "amber"
        DOWN = "down", "Down", "red"
        INACTIVE = "inactive", "Inactive", "grey"

        @property
        def rank(self) -> int:
            """Worst first, for sorting by status."""
            return {"down": 0, "degraded": 1, "inactive": 2, "healthy": 3}[self.value]

    cf_id = models.UUIDField(unique=True)
    name = models.CharField(max_length=255, db_index=True)
    status = ChoiceField(Status, max_length=16, default=Status.INACTIVE)
    status_rank = models.PositiveSmallIntegerField(default=2)
    status_since = models.DateTimeField(default=timezone.now)
    remote_config = models.BooleanField(default=False)
    cf_created_at = models.DateTimeField(null=True)
    conns_active_at = models.DateTimeField(null=True)
    conns_inactive_at = models.DateTimeField(null=True)
    deleted_at = models.DateTimeField(null=True, db_index=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    # Connector facts, refreshed one call per tunnel within the budget; kept on the row so the list page
    # needs no join per tunnel.
    connectors_due = models.BooleanField(default=True)
    connectors_synced_at = models.DateTimeField(null=True, db_index=True)
    connector_count = models.PositiveIntegerField(default=0)
    up_since = models.DateTimeField(null=True)
    # Distinct cloudflared versions of the connectors, oldest first, comma-separated.
    versions = models.CharField(max_length=200, blank=True)
    config_synced_at = models.DateTimeField(null=True)
    # When someone opened the tunnel's page and a read of its configuration was queued (one at a time).
    config_requested_at = models.DateTimeField(null=True, blank=True)
    config_version = models.IntegerField(null=True)
    route_count = models.PositiveIntegerField(default=0)
    hostname_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["deleted_at", "status_rank", "name"], name="tunnel_live_status"),
            models.Index(fields=["deleted_at", "status"], name="tunnel_live_status_count"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_serving(self) -> bool:
        return self.status in (Tunnel.Status.HEALTHY, Tunnel.Status.DEGRADED)

    @property
    def alert_key(self) -> str:
        """The key its unhealthy alert is raised, updated and resolved under."""
        return f"tunnel:{self.cf_id}:unhealthy"

    @property
    def version_list(self) -> list[str]:
        return [v for v in self.versions.split(",") if v]


class Connector(models.Model):
    """A cloudflared replica, with its connections to Cloudflare's data centres."""

    tunnel = models.ForeignKey(Tunnel, on_delete=models.CASCADE, related_name="connectors")
    cf_id = models.UUIDField()
    version = models.CharField(max_length=40, blank=True, db_index=True)
    arch = models.CharField(max_length=40, blank=True)
    run_at = models.DateTimeField(null=True)
    config_version = models.IntegerField(null=True)
    origin_ip = models.CharField(max_length=45, blank=True)
    colos = models.CharField(max_length=100, blank=True)
    conns_total = models.PositiveIntegerField(default=0)
    conns_pending = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True)
    # Each connection as [colo, opened_at ISO, pending]; at most a handful per connector.
    conns = models.JSONField(default=list)

    class Meta:
        ordering = ["run_at", "cf_id"]
        constraints = [models.UniqueConstraint(fields=["tunnel", "cf_id"], name="connector_unique_per_tunnel")]

    def __str__(self):
        return str(self.cf_id)

    @property
    def conns_active(self) -> int:
        return self.conns_total - self.conns_pending

    @property
    def colo_list(self) -> list[str]:
        return [c for c in self.colos.split(",") if c]


class StatusChange(models.Model):
    """One row each time a tunnel's status changes (never per pass): uptime and history come from these."""

    tunnel = models.ForeignKey(Tunnel, on_delete=models.CASCADE, related_name="status_changes")
    at = models.DateTimeField()
    old_status = models.CharField(max_length=16, choices=Tunnel.Status.choices, blank=True)
    new_status = ChoiceField(Tunnel.Status, max_length=16)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["tunnel", "at"], name="statuschange_tunnel_at")]
        get_latest_by = "at"

    def __str__(self):
        return f"{self.old_status or '—'} → {self.new_status}"


class VirtualNetwork(models.Model):
    cf_id = models.UUIDField(unique=True)
    name = models.CharField(max_length=255)
    comment = models.CharField(max_length=500, blank=True)
    is_default = models.BooleanField(default=False)
    deleted_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-is_default", "name"]

    def __str__(self):
        return self.name


class Route(models.Model):
    """A private CIDR route: traffic for `network` in a virtual network goes through a tunnel."""

    cf_id = models.UUIDField(unique=True)
    network = models.CharField(max_length=50)
    tunnel_cf_id = models.UUIDField(db_index=True)
    tunnel = models.ForeignKey(Tunnel, null=True, on_delete=models.SET_NULL, related_name="routes")
    virtual_network = models.ForeignKey(VirtualNetwork, null=True, on_delete=models.SET_NULL, related_name="routes")
    comment = models.CharField(max_length=500, blank=True)
    cf_created_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["network"]

    def __str__(self):
        return self.network


class PublicHostname(models.Model):
    """An ingress rule of a tunnel's remote configuration (the catch-all rule is not listed)."""

    tunnel = models.ForeignKey(Tunnel, on_delete=models.CASCADE, related_name="hostnames")
    position = models.PositiveIntegerField()
    hostname = models.CharField(max_length=253)
    path = models.CharField(max_length=255, blank=True)
    service = models.CharField(max_length=500)

    class Meta:
        ordering = ["tunnel", "position"]

    def __str__(self):
        return self.hostname


class Zone(models.Model):
    cf_id = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=253, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class DnsRecord(models.Model):
    """A CNAME to `<tunnel-id>.cfargotunnel.com`; the tunnel may no longer exist (a dangling record)."""

    cf_id = models.CharField(max_length=32, unique=True)
    zone = models.ForeignKey(Zone, on_delete=models.CASCADE, related_name="records")
    name = models.CharField(max_length=253)
    content = models.CharField(max_length=253)
    proxied = models.BooleanField(default=False)
    tunnel_cf_id = models.UUIDField(null=True, db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class SyncPass(models.Model):
    """One sync pass: what it did and what it cost in API calls."""

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True)
    api_calls = models.PositiveIntegerField(default=0)
    tunnels_seen = models.PositiveIntegerField(default=0)
    status_changes = models.PositiveIntegerField(default=0)
    connectors_fetched = models.PositiveIntegerField(default=0)
    configs_fetched = models.PositiveIntegerField(default=0)
    slow_parts = models.CharField(max_length=100, blank=True)
    complete = models.BooleanField(default=False)
    error = models.CharField(max_length=500, blank=True)
    # Renewed while the pass runs (dashboard/leases.py); a pass whose worker stopped is ended with LAPSED_REASON.
    lease_until = models.DateTimeField(null=True, blank=True)

    LAPSED_REASON = "Its worker stopped before the pass finished; the next pass reads what it left."

    class Meta:
        ordering = ["-started_at"]
        get_latest_by = "started_at"

    def __str__(self):
        return f"sync pass {self.started_at:%Y-%m-%d %H:%M:%S}"


class ObservedSpan(models.Model):
    """A stretch of time Gatehouse watched the whole account: passes that read the tunnel list, close together.

    Each pass that reads the whole list extends the latest span, or opens a new one when the previous pass is
    further back than `tunnels.observed.gap()`; the rule and how uptime uses it are in tunnels/uptime.py.
    """

    start = models.DateTimeField()
    end = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["start"]

    def __str__(self):
        return f"observed {self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M}"


class SyncCursor(models.Model):
    """When a slower part of the sync last ran, and the lease that keeps two passes from overlapping."""

    name = models.CharField(max_length=40, primary_key=True)
    synced_at = models.DateTimeField(null=True)
    leased_until = models.DateTimeField(null=True)

    def __str__(self):
        return self.name


class TunnelChange(Operation):
    """A change someone asked Gatehouse to make at Cloudflare: an operation of the shared engine (one step), run by
    a Celery task."""

    class Kind(models.TextChoices):
        TUNNEL_CREATE = "tunnel_create", "Create tunnel"
        HOSTNAME_ADD = "hostname_add", "Add public hostname"
        HOSTNAME_REMOVE = "hostname_remove", "Remove public hostname"
        ROUTE_ADD = "route_add", "Add private route"
        ROUTE_REMOVE = "route_remove", "Remove private route"
        TUNNEL_DELETE = "tunnel_delete", "Delete tunnel"
        CONNECTIONS_CLEANUP = "connections_cleanup", "Clean up stale connections"
        TOKEN_ROTATE = "token_rotate", "Rotate token"
        VNET_CREATE = "vnet_create", "Create virtual network"
        VNET_RENAME = "vnet_rename", "Rename virtual network"
        VNET_DELETE = "vnet_delete", "Delete virtual network"

    # The engine's statuses under the names tunnel pages have always used.
    class Status(ColouredChoices):
        PENDING = "pending", "Pending", "blue"
        RUNNING = "running", "Running", "blue"
        SUCCEEDED = "succeeded", "Succeeded", "green"
        FAILED = "failed", "Failed", "red"

    status = ChoiceField(Status, max_length=20, default=Status.PENDING)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    tunnel = models.ForeignKey(Tunnel, null=True, blank=True, on_delete=models.SET_NULL, related_name="changes")
    params = models.JSONField(default=dict)
    result = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    # A new tunnel's token, encrypted with a key derived from SECRET_KEY, until its creator has seen it once
    # or it expires; the page that shows it wipes it in the same statement.
    token_ciphertext = models.TextField(blank=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.get_kind_display()} ({self.status})"

    # A change that makes a token is asked for again rather than retried: its token is shown to whoever asked,
    # once, and a retry long after could take a tunnel of the same name made since for its own.
    NOT_RETRIED = (Kind.TUNNEL_CREATE, Kind.TOKEN_ROTATE)

    @property
    def retryable(self) -> bool:
        return self.status == self.Status.FAILED and self.kind not in self.NOT_RETRIED

    @property
    def summary(self) -> str:
        p = self.params
        return {
            "tunnel_create": lambda: p.get("name", ""),
            "hostname_add": lambda: f"{p.get('hostname', '')} → {p.get('service', '')}",
            "hostname_remove": lambda: p.get("hostname", ""),
            "route_add": lambda: p.get("network", ""),
            "route_remove": lambda: p.get("network", ""),
            "tunnel_delete": lambda: p.get("name", ""),
            "connections_cleanup": lambda: p.get("name", ""),
            "token_rotate": lambda: p.get("name", ""),
            "vnet_create": lambda: p.get("name", ""),
            "vnet_rename": lambda: f"{p.get('old_name', '')} → {p.get('name', '')}",
            "vnet_delete": lambda: p.get("name", ""),
        }[self.kind]()

    def token_available(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return bool(self.token_ciphertext) and self.token_expires_at is not None and self.token_expires_at > now


class TunnelChangeStep(OperationStep):
    run = models.ForeignKey(TunnelChange, on_delete=models.CASCADE, related_name="steps")

    class Meta:
        ordering = ["run", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "position"], name="tunnels_change_step_position")]


TOKEN_SHOW_WINDOW = timedelta(minutes=15)


class PushConnection(models.Model):
    """Cloudflare's notifications of tunnel events, sent to Gatehouse's webhook (one row: the account's).

    What Gatehouse created at Cloudflare is recorded by id so that disconnecting removes exactly that. The secret
    Cloudflare sends back in `cf-webhook-auth` is kept sealed (dashboard.sealing), never shown.
    """

    class State(ColouredChoices):
        OFF = "off", "Not connected", "grey"
        CONNECTING = "connecting", "Connecting", "amber"
        CONNECTED = "connected", "Connected", "green"
        DISCONNECTING = "disconnecting", "Disconnecting", "amber"
        FAILED = "failed", "Failed", "red"

    state = ChoiceField(State, max_length=16, default=State.OFF)
    secret_sealed = models.TextField(blank=True)
    url = models.CharField(max_length=500, blank=True)
    destination_id = models.CharField(max_length=64, blank=True)
    health_policy_id = models.CharField(max_length=64, blank=True)
    update_policy_id = models.CharField(max_length=64, blank=True)
    # The Access application (and its bypass policy) letting Cloudflare reach the webhook path, when asked for.
    bypass_wanted = models.BooleanField(default=False)
    bypass_app_id = models.CharField(max_length=64, blank=True)
    bypass_policy_id = models.CharField(max_length=64, blank=True)
    error = models.CharField(max_length=500, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    refused_count = models.PositiveIntegerField(default=0)
    last_refused_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"push events ({self.state})"


class PushChange(Operation):
    """Connecting or disconnecting push events at Cloudflare (tunnels.push): the shared operation row, one at a time
    for the account's connection."""

    class Kind(models.TextChoices):
        CONNECT = "connect", "Connect push events"
        DISCONNECT = "disconnect", "Disconnect push events"

    connection = models.ForeignKey(PushConnection, on_delete=models.CASCADE, related_name="changes")
    kind = models.CharField(max_length=16, choices=Kind.choices)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.get_kind_display()} ({self.status})"


class PushChangeStep(OperationStep):
    run = models.ForeignKey(PushChange, on_delete=models.CASCADE, related_name="steps")

    class Meta:
        ordering = ["run", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "position"], name="tunnels_push_change_step_position")]


class PushEvent(models.Model):
    """One notification Cloudflare posted (or its test message), recorded once however often it is sent."""

    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    # alert type, correlation id and time of the event: a replayed notification has the same key.
    key = models.CharField(max_length=200, unique=True)
    alert_type = models.CharField(max_length=64)
    sent_at = models.DateTimeField(null=True)
    tunnel_cf_id = models.UUIDField(null=True)
    tunnel_name = models.CharField(max_length=255, blank=True)
    new_status = models.CharField(max_length=16, blank=True)
    event_type = models.CharField(max_length=16, blank=True)
    text = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self):
        return f"{self.alert_type} {self.tunnel_name or self.tunnel_cf_id or ''}".strip()
