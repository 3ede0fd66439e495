"""Writes for tunnels: alerts from status, and the changes operators ask for (each run by a Celery task).

A new tunnel's token is the one secret here. Gatehouse shows it once, to the person who created the tunnel:
the task keeps it sealed (dashboard.sealing) on the change row for at most 15 minutes, and
the page that shows it clears it in the same conditional update, so a second view (or anyone else) never sees it.
It never enters logs, audit entries or task arguments.
"""

import base64
import contextlib
import copy
import ipaddress
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from alerts import selectors as alert_selectors
from alerts.services import alert_raise, alert_resolve
from dashboard.models import User
from dashboard.operations import Engine, Outcome, StepFailed, StepWait
from dashboard.requestinfo import RequestOrigin
from dashboard.sealing import Purpose, Unreadable, seal, unseal
from dashboard.services import audit_record
from integrations import cloudflare as cf
from integrations import records
from tunnels import observed
from tunnels.models import (
    TOKEN_SHOW_WINDOW,
    DnsRecord,
    PublicHostname,
    Route,
    StatusChange,
    Tunnel,
    TunnelChange,
    TunnelChangeStep,
    VirtualNetwork,
    Zone,
)

CATCH_ALL = {"hostname": "*", "service": "http_status:404"}
MANAGED_COMMENT = "managed by Gatehouse"
# A change holds its tunnel for at most this long; a worker that died mid-change frees it when this lapses.
CHANGE_CLAIM = timedelta(minutes=5)
# How long a change waits for another change to the same tunnel before its task tries again later.
CLAIM_WAIT_SECONDS = 30.0
# Reads of a configuration someone else keeps changing before Gatehouse gives up for now.
CONFIG_ATTEMPTS = 3
# A tunnel page asks for a read of its configuration at most this often.
CONFIG_REQUEST_EVERY = timedelta(minutes=1)

# --- Alerts ------------------------------------------------------------------------------------------------


def _alert_key(tunnel: Tunnel) -> str:
    return f"tunnel:{tunnel.cf_id}:unhealthy"


def tunnel_alerts_evaluate(*, now: datetime, deleted: list[Tunnel] | None = None) -> None:
    """Alert on tunnels that went down (at once) or degraded (after the grace), and resolve recovered ones.

    The grace is GATEHOUSE_TUNNEL_ALERT_GRACE_SECONDS. A recovery must also last the grace before the alert
    closes, so a tunnel flapping between states keeps one open alert instead of a stream of them. Both count only
    time Gatehouse observed (tunnels/uptime.py): from the later of the status's own start, the tunnel's first
    sighting and the start of the current observed span, so a status seen on a first sync or after a break in
    the passes waits its grace from then. Down is alerted as soon as a pass observes it. Idempotent: open
    alerts are keyed by tunnel.
    """
    grace = timedelta(seconds=settings.GATEHOUSE_TUNNEL_ALERT_GRACE_SECONDS)
    watching = observed.current_start(now)

    def lasted(tunnel: Tunnel) -> bool:
        return watching is not None and max(tunnel.status_since, tunnel.first_seen_at, watching) <= now - grace

    unhealthy = Tunnel.objects.filter(deleted_at__isnull=True).filter(
        Q(status=Tunnel.Status.DOWN) | Q(status=Tunnel.Status.DEGRADED, status_since__lte=now - grace)
    )
    open_ids = set(alert_selectors.open_alert_target_ids(target_type="tunnel"))
    for tunnel in unhealthy:
        if str(tunnel.cf_id) in open_ids or (tunnel.status == Tunnel.Status.DEGRADED and not lasted(tunnel)):
            continue
        alert_raise(
            kind=f"tunnel.{tunnel.status}",
            subject=f"Tunnel {tunnel.name} is {tunnel.status.label.lower()}",
            body=_alert_body(tunnel, now),
            target_type="tunnel",
            target_id=str(tunnel.cf_id),
            target_label=tunnel.name,
            dedupe_key=_alert_key(tunnel),
        )
    if not open_ids:
        return
    for tunnel in Tunnel.objects.filter(cf_id__in=list(open_ids)):
        if tunnel.deleted_at:
            alert_resolve(dedupe_key=_alert_key(tunnel), body=f"Tunnel {tunnel.name} was deleted.")
        elif tunnel.status not in (Tunnel.Status.DOWN, Tunnel.Status.DEGRADED) and lasted(tunnel):
            alert_resolve(
                dedupe_key=_alert_key(tunnel),
                body=f"Tunnel {tunnel.name} is {tunnel.status.label.lower()} again "
                f"since {tunnel.status_since:%Y-%m-%d %H:%M} UTC.",
            )
    for tunnel in deleted or []:
        alert_resolve(dedupe_key=_alert_key(tunnel), body=f"Tunnel {tunnel.name} was deleted.")


def _alert_body(tunnel: Tunnel, now: datetime) -> str:
    minutes = max(0, round((now - tunnel.status_since).total_seconds() / 60))
    return (
        f"Cloudflare reports tunnel {tunnel.name} ({tunnel.cf_id}) as {tunnel.status} "
        f"since {tunnel.status_since:%Y-%m-%d %H:%M} UTC ({minutes} min)."
    )


# --- Validation shared by forms and services --------------------------------------------------------------

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_NAME_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"(?:\[[0-9a-fA-F:.]+\]|{_NAME_LABEL}(?:\.{_NAME_LABEL})*)"
_SERVICE = {
    "http": re.compile(rf"^https?://{_HOST}(?::(?P<port>\d{{1,5}}))?(?:/[^\s]*)?\Z"),
    "tcp": re.compile(rf"^(?:tcp|ssh|rdp|smb)://{_HOST}(?::(?P<port>\d{{1,5}}))?\Z"),
    "unix": re.compile(r"^unix(?:\+tls)?:/[^\s]+\Z"),
    "status": re.compile(r"^http_status:(?P<code>[1-5]\d\d)\Z"),
}


def validate_hostname(value: str) -> str:
    """RFC 1123 host name, lower-cased; raises ValidationError with a sentence for the field."""
    name = value.strip().lower().rstrip(".")
    if not name or len(name) > 253:
        raise ValidationError("A host name has 1 to 253 characters.")
    labels = name.split(".")
    if len(labels) < 2:
        raise ValidationError("Give a full host name, such as app.example.com.")
    for label in labels:
        if not _LABEL.match(label):
            raise ValidationError(
                f"“{label[:63]}” is not a valid label: letters, digits and hyphens, 1 to 63 characters, "
                "not starting or ending with a hyphen."
            )
    return name


def zone_for(hostname: str) -> Zone | None:
    """The longest known zone that contains the host name."""
    candidates = [hostname.split(".", i)[-1] for i in range(hostname.count(".") + 1)]
    zones = {z.name: z for z in Zone.objects.filter(name__in=candidates)}
    for candidate in candidates:
        if candidate in zones:
            return zones[candidate]
    return None


def validate_service(value: str) -> str:
    service = value.strip()
    if len(service) > 500:
        raise ValidationError("The service is too long.")
    for kind, pattern in _SERVICE.items():
        match = pattern.match(service)
        if match:
            port = match.groupdict().get("port")
            if port is not None and not 1 <= int(port) <= 65535:
                raise ValidationError("Ports run from 1 to 65535.")
            if kind == "status" and not 100 <= int(match["code"]) <= 599:
                raise ValidationError("An HTTP status is between 100 and 599.")
            return service
    raise ValidationError(
        "Use http://host:port, https://host:port, tcp://host:port, ssh://host:port, rdp://host:port, "
        "unix:/path/to/socket or http_status:NNN."
    )


def validate_network(value: str) -> str:
    try:
        network = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            loose = ipaddress.ip_network(value.strip(), strict=False)
            raise ValidationError(f"{value.strip()[:50]} has host bits set; did you mean {loose}?") from None
        raise ValidationError("Give a network in CIDR notation, such as 10.2.0.0/16.") from None
    return str(network)


# --- Changes -------------------------------------------------------------------------------------------------


def _request(
    *, actor: User, kind: str, tunnel: Tunnel | None, params: dict[str, Any], request_origin: RequestOrigin
) -> TunnelChange:
    from tunnels.tasks import tunnel_change_run

    change = TunnelChange(
        kind=kind,
        tunnel=tunnel,
        params=params,
        actor=actor,
        actor_email=actor.email,
        source_ip=request_origin.source_ip,
        request_id=request_origin.request_id[:64],
    )
    change.full_clean()
    with transaction.atomic():
        change.save()
        tunnel_change_steps_create(change=change)
        tunnel_change_run.delay_on_commit(change.pk)
    return change


def tunnel_create(*, actor: User, name: str, request_origin: RequestOrigin) -> TunnelChange:
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        raise ValidationError({"name": "Use 1 to 100 letters, digits, dots, hyphens or underscores."})
    if Tunnel.objects.filter(name=name, deleted_at__isnull=True).exists():
        raise ValidationError({"name": "A tunnel with this name already exists."})
    return _request(
        actor=actor,
        kind=TunnelChange.Kind.TUNNEL_CREATE,
        tunnel=None,
        params={"name": name},
        request_origin=request_origin,
    )


def hostname_add(
    *, actor: User, tunnel: Tunnel, hostname: str, service: str, request_origin: RequestOrigin
) -> TunnelChange:
    errors = {}
    try:
        hostname = validate_hostname(hostname)
        zone = zone_for(hostname)
        if zone is None:
            errors["hostname"] = "This host name is in none of the zones Gatehouse knows."
        elif PublicHostname.objects.filter(hostname=hostname, tunnel__deleted_at__isnull=True).exists():
            errors["hostname"] = "This host name is already published through a tunnel."
    except ValidationError as exc:
        errors["hostname"] = exc.messages[0]
    try:
        service = validate_service(service)
    except ValidationError as exc:
        errors["service"] = exc.messages[0]
    if not tunnel.remote_config and not errors:
        errors["hostname"] = "This tunnel is locally managed: its hostnames live in its own config file."
    if errors:
        raise ValidationError(errors)
    params = {"hostname": hostname, "service": service, "zone": zone.cf_id}
    return _request(
        actor=actor, kind=TunnelChange.Kind.HOSTNAME_ADD, tunnel=tunnel, params=params, request_origin=request_origin
    )


def hostname_remove(*, actor: User, tunnel: Tunnel, hostname: str, request_origin: RequestOrigin) -> TunnelChange:
    if not tunnel.hostnames.filter(hostname=hostname).exists():
        raise ValidationError({"hostname": "This tunnel does not publish that host name."})
    zone = zone_for(hostname)
    params = {"hostname": hostname, "zone": zone.cf_id if zone else ""}
    return _request(
        actor=actor, kind=TunnelChange.Kind.HOSTNAME_REMOVE, tunnel=tunnel, params=params, request_origin=request_origin
    )


def route_add(
    *,
    actor: User,
    tunnel: Tunnel,
    network: str,
    virtual_network: VirtualNetwork,
    comment: str,
    request_origin: RequestOrigin,
) -> TunnelChange:
    try:
        network = validate_network(network)
    except ValidationError as exc:
        raise ValidationError({"network": exc.messages[0]}) from None
    if Route.objects.filter(network=network, virtual_network=virtual_network).exists():
        raise ValidationError({"network": f"{network} is already routed in {virtual_network.name}."})
    params = {
        "network": network,
        "virtual_network": str(virtual_network.cf_id),
        "virtual_network_name": virtual_network.name,
        "comment": comment.strip()[:100],
    }
    return _request(
        actor=actor, kind=TunnelChange.Kind.ROUTE_ADD, tunnel=tunnel, params=params, request_origin=request_origin
    )


def route_remove(*, actor: User, route: Route, request_origin: RequestOrigin) -> TunnelChange:
    params = {"route": str(route.cf_id), "network": route.network}
    return _request(
        actor=actor,
        kind=TunnelChange.Kind.ROUTE_REMOVE,
        tunnel=route.tunnel,
        params=params,
        request_origin=request_origin,
    )


def tunnel_delete(*, actor: User, tunnel: Tunnel, request_origin: RequestOrigin) -> TunnelChange:
    """Delete the tunnel at Cloudflare with its private routes and the DNS records Gatehouse created for it."""
    if tunnel.deleted_at:
        raise ValidationError("This tunnel is already deleted.")
    return _request(
        actor=actor,
        kind=TunnelChange.Kind.TUNNEL_DELETE,
        tunnel=tunnel,
        params={"name": tunnel.name},
        request_origin=request_origin,
    )


def connections_cleanup(*, actor: User, tunnel: Tunnel, request_origin: RequestOrigin) -> TunnelChange:
    """Remove the connectors that hold no open connection (each one only waits to reconnect, or has none)."""
    if tunnel.deleted_at:
        raise ValidationError("This tunnel is deleted.")
    return _request(
        actor=actor,
        kind=TunnelChange.Kind.CONNECTIONS_CLEANUP,
        tunnel=tunnel,
        params={"name": tunnel.name},
        request_origin=request_origin,
    )


def token_rotate(*, actor: User, tunnel: Tunnel, request_origin: RequestOrigin) -> TunnelChange:
    """Give the tunnel a new secret; its new token is shown once to whoever asked, like a new tunnel's."""
    if tunnel.deleted_at:
        raise ValidationError("This tunnel is deleted.")
    return _request(
        actor=actor,
        kind=TunnelChange.Kind.TOKEN_ROTATE,
        tunnel=tunnel,
        params={"name": tunnel.name},
        request_origin=request_origin,
    )


def _vnet_name(name: str, *, keep: VirtualNetwork | None = None) -> str:
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}", name):
        raise ValidationError({"name": "Use 1 to 100 letters, digits, spaces, dots, hyphens or underscores."})
    taken = VirtualNetwork.objects.filter(name=name, deleted_at__isnull=True)
    if keep is not None:
        taken = taken.exclude(pk=keep.pk)
    if taken.exists():
        raise ValidationError({"name": "A virtual network with this name already exists."})
    return name


def vnet_create(*, actor: User, name: str, comment: str, request_origin: RequestOrigin) -> TunnelChange:
    params = {"name": _vnet_name(name), "comment": comment.strip()[:100]}
    return _request(
        actor=actor, kind=TunnelChange.Kind.VNET_CREATE, tunnel=None, params=params, request_origin=request_origin
    )


def vnet_rename(*, actor: User, vnet: VirtualNetwork, name: str, request_origin: RequestOrigin) -> TunnelChange:
    if vnet.deleted_at:
        raise ValidationError("This virtual network is deleted.")
    params = {"vnet": str(vnet.cf_id), "old_name": vnet.name, "name": _vnet_name(name, keep=vnet)}
    return _request(
        actor=actor, kind=TunnelChange.Kind.VNET_RENAME, tunnel=None, params=params, request_origin=request_origin
    )


def vnet_delete(*, actor: User, vnet: VirtualNetwork, request_origin: RequestOrigin) -> TunnelChange:
    if vnet.deleted_at:
        raise ValidationError("This virtual network is already deleted.")
    if vnet.is_default:
        raise ValidationError("The default virtual network cannot be deleted; make another one the default first.")
    routes = vnet.routes.count()
    if routes:
        raise ValidationError(
            f"{vnet.name} still has {routes} private route{'s' if routes != 1 else ''}; remove them first."
        )
    params = {"vnet": str(vnet.cf_id), "name": vnet.name}
    return _request(
        actor=actor, kind=TunnelChange.Kind.VNET_DELETE, tunnel=None, params=params, request_origin=request_origin
    )


def tunnel_config_request(*, tunnel: Tunnel, now: datetime | None = None) -> bool:
    """Queue a read of a remotely managed tunnel's configuration for someone looking at its page.

    Only when it was never read or is older than the rotation keeps it, and at most once a minute per tunnel
    (the page polls); the read runs at interactive priority in a task, so the page never waits on Cloudflare.
    """
    from tunnels.tasks import tunnel_config_read

    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.GATEHOUSE_TUNNEL_CONFIG_SYNC_SECONDS)
    with transaction.atomic():
        claimed = (
            Tunnel.objects.filter(pk=tunnel.pk, remote_config=True, deleted_at__isnull=True)
            .filter(Q(config_synced_at__isnull=True) | Q(config_synced_at__lte=stale))
            .filter(Q(config_requested_at__isnull=True) | Q(config_requested_at__lte=now - CONFIG_REQUEST_EVERY))
            .update(config_requested_at=now)
        )
        if claimed:
            tunnel_config_read.delay_on_commit(tunnel.pk)
    return bool(claimed)


# --- Carrying changes out (called by the task) -----------------------------------------------------------


class ChangeRefused(StepFailed):
    """Cloudflare's state makes the change impossible; the reason is shown to the operator."""


class TunnelBusy(StepWait):
    """Another change holds the tunnel, or its configuration kept changing: the task tries again later."""

    def __init__(self, reason: str):
        super().__init__(CLAIM_WAIT_SECONDS, reason=reason)


_AUDIT = {
    "tunnel_create": "tunnel.created",
    "hostname_add": "tunnel.hostname_added",
    "hostname_remove": "tunnel.hostname_removed",
    "route_add": "tunnel.route_added",
    "route_remove": "tunnel.route_removed",
    "tunnel_delete": "tunnel.deleted",
    "connections_cleanup": "tunnel.connections_cleaned",
    "token_rotate": "tunnel.token_rotated",
    "vnet_create": "vnet.created",
    "vnet_rename": "vnet.renamed",
    "vnet_delete": "vnet.deleted",
}


@dataclass
class _Carrying:
    """What the change's step is given; the step row keeps `answers`."""

    change: TunnelChange
    answers: list[dict[str, Any]] = field(default_factory=list)


class TunnelChanges(Engine):
    """A change is one step: its executor, one change per tunnel at a time. The audit keeps the actions tunnel
    changes have always written: one for the change made, `tunnel.change_failed` for one that stopped."""

    run_model = TunnelChange
    step_model = TunnelChangeStep
    # No related rows loaded with the locked change: its tunnel and actor may be null, and PostgreSQL cannot lock
    # the nullable side of an outer join.
    retry_first = 4.0

    def enqueue(self, run_id: int, *, countdown: float = 0.0) -> None:
        from tunnels.tasks import tunnel_change_run

        tunnel_change_run.apply_async((run_id,), countdown=countdown)

    def receipt(self, run: TunnelChange) -> _Carrying:
        return _Carrying(change=run)

    def execute(self, step: TunnelChangeStep, receipt: _Carrying) -> None:
        change = receipt.change
        try:
            with _tunnel_claimed(change.tunnel) if change.tunnel else contextlib.nullcontext():
                result, token = _EXECUTORS[change.kind](change)
        except cf.CloudflareError as exc:
            if isinstance(exc, cf.CloudflareTransient):
                raise
            raise StepFailed(exc.message) from exc
        updates: dict[str, Any] = {"result": result}
        if token:
            updates["token_ciphertext"] = seal(token, purpose=Purpose.TUNNEL_TOKEN)
            updates["token_expires_at"] = timezone.now() + TOKEN_SHOW_WINDOW
        # The executor may have set change.tunnel in memory (a new tunnel): the row must get it too.
        if result.get("tunnel_pk"):
            updates["tunnel_id"] = result["tunnel_pk"]
        TunnelChange.objects.filter(pk=change.pk).update(**updates)

    def audit(self, run: TunnelChange, event: str, details: dict[str, Any]) -> None:
        if event == "succeeded":
            details = {**run.params, **{k: v for k, v in run.result.items() if k in _AUDITED_RESULTS}}
            _audit(run, _AUDIT[run.kind], details)
        elif event == "failed":
            reason = details["reason"][:500]
            _audit(run, "tunnel.change_failed", {"change": run.kind, "reason": reason, **run.params})

    def retried(self, run: TunnelChange, *, actor: Any, request_origin: RequestOrigin | None) -> None:
        _audit(
            run, "tunnel.change_retried", {"change": run.kind, **run.params}, actor=actor, request_origin=request_origin
        )


_ENGINE = TunnelChanges()


def tunnel_change_advance(*, change_id: int) -> Outcome:
    """Carry out the change's next step. Transient Cloudflare errors propagate; a tunnel another change holds
    comes back as an outcome to try again later."""
    return _ENGINE.advance(run_id=change_id)


def tunnel_change_drive(task: Any, change_id: int) -> None:
    """The task's work: the change's steps, with the engine's retries and backoff."""
    _ENGINE.drive(task, change_id)


def tunnel_change_retry(*, actor: User, change: TunnelChange, request_origin: RequestOrigin) -> TunnelChange:
    """Make a stopped change again, as it was asked: each change reads Cloudflare afresh before it writes."""
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators change tunnels.")
    return _ENGINE.retry(run_id=change.pk, actor=actor, request_origin=request_origin)


def tunnel_change_steps_create(*, change: TunnelChange) -> None:
    _ENGINE.create_steps(change, [(change.kind, change.get_kind_display())])


@contextlib.contextmanager
def _tunnel_claimed(tunnel: Tunnel) -> Iterator[None]:
    """Hold the tunnel for one change: a conditional update of its row that only one worker can win.

    Waits up to CLAIM_WAIT_SECONDS for a change that holds it; the claim is released only by its holder (its
    expiry time is the token), so a change that outlived its claim cannot free someone else's.
    """
    deadline = time.monotonic() + CLAIM_WAIT_SECONDS
    while True:
        now = timezone.now()
        until = now + CHANGE_CLAIM
        free = Q(change_claimed_until__isnull=True) | Q(change_claimed_until__lte=now)
        if Tunnel.objects.filter(free, pk=tunnel.pk).update(change_claimed_until=until):
            break
        if time.monotonic() >= deadline:
            raise TunnelBusy(f"Another change to tunnel {tunnel.name} is still running.")
        time.sleep(0.2)
    try:
        yield
    finally:
        Tunnel.objects.filter(pk=tunnel.pk, change_claimed_until=until).update(change_claimed_until=None)


# What a change's result adds to its audit entry (never a secret: a token is not in the result).
_AUDITED_RESULTS = (
    "tunnel",
    "vnet",
    "routes_removed",
    "dns_removed",
    "dns_left",
    "connectors_removed",
    "connectors_removed_count",
)


def _audit(
    change: TunnelChange,
    action: str,
    details: dict,
    *,
    actor: User | None = None,
    request_origin: RequestOrigin | None = None,
) -> None:
    """An entry for the change; by default in the name of whoever asked for it, from where they asked."""
    tunnel = change.tunnel
    if change.kind.startswith("vnet_"):
        target = ("virtual_network", details.get("vnet", ""), change.params.get("name", ""))
    elif tunnel:
        target = ("tunnel", str(tunnel.cf_id), tunnel.name)
    else:
        target = ("tunnel", "", change.params.get("name", ""))
    audit_record(
        action=action,
        actor=actor or change.actor,
        target_type=target[0],
        target_id=target[1],
        target_label=target[2],
        details=details,
        request_origin=request_origin or change.request_origin,
    )


def tunnel_token_take(*, change: TunnelChange, user: User) -> str | None:
    """The new tunnel's token, once, for the person who created it; the stored copy is wiped as it is read."""
    if change.actor_id != user.pk or not change.token_available():
        return None
    ciphertext = change.token_ciphertext
    taken = TunnelChange.objects.filter(
        pk=change.pk, token_ciphertext=ciphertext, token_expires_at__gt=timezone.now()
    ).update(token_ciphertext="", token_expires_at=None)
    if not taken:
        return None
    try:
        return unseal(ciphertext, purpose=Purpose.TUNNEL_TOKEN)
    except Unreadable:
        return None


def tunnel_tokens_expire() -> int:
    """Wipe tokens nobody came back for."""
    return (
        TunnelChange.objects.exclude(token_ciphertext="")
        .filter(token_expires_at__lte=timezone.now())
        .update(token_ciphertext="", token_expires_at=None)
    )


def public_hostnames_store(*, tunnel: Tunnel, configuration: records.TunnelConfiguration, now: datetime) -> None:
    """Keep the tunnel's public hostnames as this configuration lists them (the catch-all rule is not one).

    A configuration older than the one stored (a sync pass that read it before a change wrote) is not stored.
    """
    rows = [
        PublicHostname(tunnel=tunnel, position=i, hostname=rule.hostname, path=rule.path, service=rule.service)
        for i, rule in enumerate(configuration.ingress)
        if not rule.catch_all
    ]
    with transaction.atomic():
        stored = Tunnel.objects.filter(pk=tunnel.pk).values_list("config_version", flat=True).first()
        if stored is not None and configuration.version is not None and configuration.version < stored:
            return
        PublicHostname.objects.filter(tunnel=tunnel).delete()
        PublicHostname.objects.bulk_create(rows)
        Tunnel.objects.filter(pk=tunnel.pk).update(
            hostname_count=len(rows), config_version=configuration.version, config_synced_at=now
        )


# An edit gets the configuration as read and returns its new rules (the catch-all left out, each rule as read
# or new), or None when the configuration already says what the change asks for.
Edit = Callable[[records.TunnelConfiguration], list[dict[str, Any]] | None]


def _configuration_change(tunnel: Tunnel, edit: Edit) -> records.TunnelConfiguration:
    """Apply `edit` to the tunnel's configuration at Cloudflare, keeping everything else in it exactly as read.

    A PUT replaces the whole configuration and Cloudflare has no conditional write, so the version is read again
    just before writing: if someone changed the configuration since it was read, the edit is made again on
    theirs, and their change stays. The caller holds the tunnel, so no other Gatehouse change interleaves.
    """
    tunnel_id = str(tunnel.cf_id)
    current = cf.tunnel_configuration(tunnel_id, priority=cf.Priority.INTERACTIVE)
    for _attempt in range(CONFIG_ATTEMPTS):
        rules = edit(current)
        if rules is None:
            public_hostnames_store(tunnel=tunnel, configuration=current, now=timezone.now())
            return current
        latest = cf.tunnel_configuration(tunnel_id, priority=cf.Priority.INTERACTIVE)
        if latest.version != current.version:
            current = latest
            continue
        written = cf.tunnel_configuration_put(tunnel_id, _with_rules(current, rules))
        public_hostnames_store(tunnel=tunnel, configuration=written, now=timezone.now())
        return written
    raise TunnelBusy(f"The configuration of tunnel {tunnel.name} kept changing at Cloudflare; nothing was written.")


def _with_rules(current: records.TunnelConfiguration, rules: list[dict[str, Any]]) -> dict[str, Any]:
    """The configuration as read with these rules, and its catch-all rule (or the usual 404) last."""
    found = next((rule for rule in current.ingress if rule.catch_all), None)
    catch_all = copy.deepcopy(found.raw) if found else dict(CATCH_ALL)
    if found and not found.hostname:
        # The SDK types every rule's hostname as required; "*" is cloudflared's own spelling of "any".
        catch_all["hostname"] = "*"
    return {**copy.deepcopy(current.config), "ingress": [*copy.deepcopy(rules), catch_all]}


def _adding(hostname: str, service: str) -> Edit:
    def edit(current: records.TunnelConfiguration) -> list[dict[str, Any]] | None:
        same = [r for r in current.ingress if r.hostname.lower() == hostname and not r.path]
        if same and same[0].service != service:
            raise ChangeRefused(f"{hostname} is already routed to {same[0].service[:100]} on this tunnel.")
        if same:
            return None
        return [*(r.raw for r in current.ingress if not r.catch_all), {"hostname": hostname, "service": service}]

    return edit


def _removing(hostname: str) -> Edit:
    def edit(current: records.TunnelConfiguration) -> list[dict[str, Any]] | None:
        rules = [r for r in current.ingress if not r.catch_all]
        kept = [r.raw for r in rules if r.hostname.lower() != hostname]
        return kept if len(kept) != len(rules) else None

    return edit


def _execute_tunnel_create(change: TunnelChange) -> tuple[dict, str | None]:
    name = change.params["name"]
    # A retry after a lost answer must not create a second tunnel: look for the one the first try made. A tunnel of
    # that name that is older than this request, or already running, is someone else's and is left alone.
    existing = cf.tunnels_named(name)
    if existing:
        created = existing[0]
        born = created.created_at
        if born is None or born < change.created_at - timedelta(minutes=1) or created.conns_active_at:
            raise ChangeRefused(f"A tunnel named {name} already exists at Cloudflare.")
    else:
        created = cf.tunnel_create(name)
    cf_id = created.id
    token = cf.tunnel_token(str(cf_id))
    tunnel, _ = Tunnel.objects.update_or_create(
        cf_id=cf_id,
        defaults={
            "name": name,
            "remote_config": True,
            "cf_created_at": created.created_at,
            "status": Tunnel.Status.INACTIVE,
            "status_rank": Tunnel.Status.INACTIVE.rank,
        },
    )
    if not tunnel.status_changes.exists():
        StatusChange.objects.create(tunnel=tunnel, at=timezone.now(), old_status="", new_status=tunnel.status)
    change.tunnel = tunnel
    return {"tunnel": str(cf_id), "tunnel_pk": tunnel.pk}, token


def _execute_hostname_add(change: TunnelChange) -> tuple[dict, None]:
    tunnel, hostname, service = change.tunnel, change.params["hostname"], change.params["service"]
    target = f"{tunnel.cf_id}.cfargotunnel.com"
    existing = cf.dns_records_named(change.params["zone"], hostname)
    clash = [r for r in existing if not (r.type == "CNAME" and r.content.lower() == target)]
    if clash:
        raise ChangeRefused(f"{hostname} already has a {clash[0].type} record pointing to {clash[0].content[:100]}.")
    configuration = _configuration_change(tunnel, _adding(hostname, service))
    if not existing:
        record = cf.dns_cname_create(
            zone_id=change.params["zone"], name=hostname, target=target, comment=MANAGED_COMMENT
        )
        zone = Zone.objects.filter(cf_id=change.params["zone"]).first()
        if zone:
            DnsRecord.objects.update_or_create(
                cf_id=record.id,
                defaults={
                    "zone": zone,
                    "name": hostname,
                    "content": target,
                    "proxied": True,
                    "tunnel_cf_id": tunnel.cf_id,
                },
            )
    return {"config_version": configuration.version}, None


def _execute_hostname_remove(change: TunnelChange) -> tuple[dict, None]:
    tunnel, hostname = change.tunnel, change.params["hostname"]
    configuration = _configuration_change(tunnel, _removing(hostname))
    if change.params.get("zone"):
        target = f"{tunnel.cf_id}.cfargotunnel.com"
        for record in cf.dns_records_named(change.params["zone"], hostname):
            # Only the record that points at this tunnel; anything else is not ours to remove.
            if record.type == "CNAME" and record.content.lower() == target:
                cf.dns_record_delete(change.params["zone"], record.id)
                DnsRecord.objects.filter(cf_id=record.id).delete()
    return {"config_version": configuration.version}, None


def _execute_route_add(change: TunnelChange) -> tuple[dict, None]:
    tunnel = change.tunnel
    route = cf.route_create(
        network=change.params["network"],
        tunnel_id=str(tunnel.cf_id),
        virtual_network_id=change.params["virtual_network"],
        comment=change.params.get("comment") or MANAGED_COMMENT,
    )
    vnet = VirtualNetwork.objects.filter(cf_id=change.params["virtual_network"]).first()
    Route.objects.update_or_create(
        cf_id=route.id,
        defaults={
            "network": route.network,
            "tunnel_cf_id": tunnel.cf_id,
            "tunnel": tunnel,
            "virtual_network": vnet,
            "comment": route.comment,
        },
    )
    Tunnel.objects.filter(pk=tunnel.pk).update(route_count=tunnel.routes.count())
    return {"route": str(route.id)}, None


def _execute_route_remove(change: TunnelChange) -> tuple[dict, None]:
    # Already gone is fine: the change's goal holds.
    with contextlib.suppress(cf.CloudflareNotFound):
        cf.route_delete(change.params["route"])
    Route.objects.filter(cf_id=change.params["route"]).delete()
    if change.tunnel:
        Tunnel.objects.filter(pk=change.tunnel.pk).update(route_count=change.tunnel.routes.count())
    return {}, None


def _execute_tunnel_delete(change: TunnelChange) -> tuple[dict, None]:
    """Stale connectors, private routes, Gatehouse's DNS records, then the tunnel; refused while it serves.

    Cloudflare refuses to delete a tunnel with active connections, and removing the connectors of a running
    cloudflared would only have it reconnect: a tunnel with an open connection is refused with what to do.
    """
    tunnel = change.tunnel
    tunnel_id = str(tunnel.cf_id)
    try:
        connectors = cf.tunnel_connectors(tunnel_id, priority=cf.Priority.INTERACTIVE)
    except cf.CloudflareNotFound:
        connectors = []
    serving = [k for k in connectors if any(not c.is_pending_reconnect for c in k.conns)]
    if serving:
        count = sum(1 for k in serving for c in k.conns if not c.is_pending_reconnect)
        raise ChangeRefused(
            f"Tunnel {tunnel.name} still has {count} active connection{'s' if count != 1 else ''} from "
            f"{len(serving)} connector{'s' if len(serving) != 1 else ''} (origin "
            f"{', '.join(sorted({c.origin_ip for k in serving for c in k.conns if c.origin_ip})[:5]) or 'unknown'}). "
            "Stop cloudflared there first, then delete the tunnel again."
        )
    if connectors:
        with contextlib.suppress(cf.CloudflareNotFound):
            cf.tunnel_connections_delete(tunnel_id)
    routes_removed = []
    for route in cf.routes_of_tunnel(tunnel_id):
        with contextlib.suppress(cf.CloudflareNotFound):
            cf.route_delete(str(route.id))
        routes_removed.append(route.network)
    target = f"{tunnel_id}.cfargotunnel.com"
    dns_removed, dns_left = [], []
    # The zones Gatehouse knows: the only ones it publishes hostnames in, so every record it created is there.
    for zone in Zone.objects.all():
        for record in cf.dns_records_pointing(zone.cf_id, target):
            if MANAGED_COMMENT in record.comment:
                with contextlib.suppress(cf.CloudflareNotFound):
                    cf.dns_record_delete(zone.cf_id, record.id)
                DnsRecord.objects.filter(cf_id=record.id).delete()
                dns_removed.append(record.name)
            else:
                dns_left.append(record.name)
    with contextlib.suppress(cf.CloudflareNotFound):
        cf.tunnel_delete(tunnel_id)
    now = timezone.now()
    with transaction.atomic():
        Route.objects.filter(tunnel_cf_id=tunnel.cf_id).delete()
        tunnel.connectors.all().delete()
        Tunnel.objects.filter(pk=tunnel.pk).update(
            deleted_at=now, connectors_due=False, route_count=0, connector_count=0, up_since=None
        )
    alert_resolve(dedupe_key=_alert_key(tunnel), body=f"Tunnel {tunnel.name} was deleted.")
    return {
        "tunnel": tunnel_id,
        "routes_removed": routes_removed,
        "dns_removed": sorted(dns_removed),
        "dns_left": sorted(dns_left),
        "connectors_removed_count": len(connectors),
    }, None


def _execute_connections_cleanup(change: TunnelChange) -> tuple[dict, None]:
    """Remove, one by one, the connectors that hold no open connection; a serving connector stays."""
    tunnel = change.tunnel
    tunnel_id = str(tunnel.cf_id)
    stale = [
        k
        for k in cf.tunnel_connectors(tunnel_id, priority=cf.Priority.INTERACTIVE)
        if all(c.is_pending_reconnect for c in k.conns)
    ]
    for connector in stale:
        with contextlib.suppress(cf.CloudflareNotFound):
            cf.tunnel_connections_delete(tunnel_id, client_id=str(connector.id))
    with transaction.atomic():
        tunnel.connectors.filter(cf_id__in=[k.id for k in stale]).delete()
        Tunnel.objects.filter(pk=tunnel.pk).update(connectors_due=True, connector_count=tunnel.connectors.count())
    return {"connectors_removed": [str(k.id) for k in stale]}, None


def _execute_token_rotate(change: TunnelChange) -> tuple[dict, str]:
    tunnel_id = str(change.tunnel.cf_id)
    cf.tunnel_secret_set(tunnel_id, base64.b64encode(secrets.token_bytes(32)).decode())
    return {"tunnel": tunnel_id}, cf.tunnel_token(tunnel_id)


def _execute_vnet_create(change: TunnelChange) -> tuple[dict, None]:
    name = change.params["name"]
    # A retry after a lost answer finds the network the first try made (names are unique at Cloudflare); one of
    # that name made before this request is someone else's.
    existing = [v for v in cf.virtual_networks(priority=cf.Priority.INTERACTIVE) if v.name == name]
    born = existing[0].created_at if existing else None
    if existing and (born is None or born < change.created_at - timedelta(minutes=1)):
        raise ChangeRefused(f"A virtual network named {name} already exists at Cloudflare.")
    vnet = existing[0] if existing else cf.virtual_network_create(name=name, comment=change.params["comment"])
    VirtualNetwork.objects.update_or_create(
        cf_id=vnet.id,
        defaults={"name": vnet.name, "comment": vnet.comment, "is_default": vnet.is_default, "deleted_at": None},
    )
    return {"vnet": str(vnet.id)}, None


def _execute_vnet_rename(change: TunnelChange) -> tuple[dict, None]:
    vnet = cf.virtual_network_rename(change.params["vnet"], name=change.params["name"])
    VirtualNetwork.objects.filter(cf_id=vnet.id).update(name=vnet.name)
    return {"vnet": str(vnet.id)}, None


def _execute_vnet_delete(change: TunnelChange) -> tuple[dict, None]:
    with contextlib.suppress(cf.CloudflareNotFound):
        cf.virtual_network_delete(change.params["vnet"])
    VirtualNetwork.objects.filter(cf_id=change.params["vnet"]).update(deleted_at=timezone.now())
    return {"vnet": change.params["vnet"]}, None


_EXECUTORS = {
    "tunnel_create": _execute_tunnel_create,
    "hostname_add": _execute_hostname_add,
    "hostname_remove": _execute_hostname_remove,
    "route_add": _execute_route_add,
    "route_remove": _execute_route_remove,
    "tunnel_delete": _execute_tunnel_delete,
    "connections_cleanup": _execute_connections_cleanup,
    "token_rotate": _execute_token_rotate,
    "vnet_create": _execute_vnet_create,
    "vnet_rename": _execute_vnet_rename,
    "vnet_delete": _execute_vnet_delete,
}
