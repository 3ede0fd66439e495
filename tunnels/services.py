"""Writes for tunnels: alerts from status, and the changes operators ask for, checked and recorded here and
carried out by tunnels.changes in a Celery task.

A new tunnel's token is the one secret here. Gatehouse shows it once, to the person who created the tunnel:
the task keeps it sealed (dashboard.sealing) on the change row for at most 15 minutes, and
the page that shows it clears it in the same conditional update, so a second view (or anyone else) never sees it.
It never enters logs, audit entries or task arguments.
"""

import ipaddress
import re
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from alerts import selectors as alert_selectors
from alerts.services import alert_raise, alert_resolve
from dashboard import queue
from dashboard.models import User
from dashboard.requestinfo import RequestOrigin
from dashboard.sealing import Purpose, Unreadable, unseal
from tunnels import changes, observed
from tunnels.models import (
    PublicHostname,
    Route,
    Tunnel,
    TunnelChange,
    VirtualNetwork,
    Zone,
)

# A tunnel page asks for a read of its configuration at most this often.
CONFIG_REQUEST_EVERY = timedelta(minutes=1)

# --- Alerts ------------------------------------------------------------------------------------------------


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
            dedupe_key=tunnel.alert_key,
        )
    if not open_ids:
        return
    for tunnel in Tunnel.objects.filter(cf_id__in=list(open_ids)):
        if tunnel.deleted_at:
            alert_resolve(dedupe_key=tunnel.alert_key, body=f"Tunnel {tunnel.name} was deleted.")
        elif tunnel.status not in (Tunnel.Status.DOWN, Tunnel.Status.DEGRADED) and lasted(tunnel):
            alert_resolve(
                dedupe_key=tunnel.alert_key,
                body=f"Tunnel {tunnel.name} is {tunnel.status.label.lower()} again "
                f"since {tunnel.status_since:%Y-%m-%d %H:%M} UTC.",
            )
    for tunnel in deleted or []:
        alert_resolve(dedupe_key=tunnel.alert_key, body=f"Tunnel {tunnel.name} was deleted.")


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


# What a private route can capture besides a private network. A device sends what a route covers to the tunnel,
# so a route over these ranges takes traffic that never belonged to the private network.
_CAPTURED = [
    (ipaddress.ip_network("0.0.0.0/8"), "the unspecified address 0.0.0.0 (“this network”)"),
    (ipaddress.ip_network("127.0.0.0/8"), "loopback addresses (each device's own)"),
    (
        ipaddress.ip_network("169.254.0.0/16"),
        "link-local addresses, the cloud metadata service at 169.254.169.254 among them",
    ),
    (ipaddress.ip_network("224.0.0.0/4"), "multicast addresses"),
    (ipaddress.ip_network("255.255.255.255/32"), "the broadcast address"),
    (ipaddress.ip_network("::/128"), "the unspecified address ::"),
    (ipaddress.ip_network("::1/128"), "loopback addresses (each device's own)"),
    (ipaddress.ip_network("::ffff:0:0/96"), "IPv4 addresses written as IPv6 (::ffff:0:0/96)"),
    (ipaddress.ip_network("fe80::/10"), "link-local addresses"),
    (ipaddress.ip_network("ff00::/8"), "multicast addresses"),
]
_PRIVATE = [
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
]


def route_capture(network: str) -> str:
    """What routing `network` (as validate_network gives it) would send through a tunnel besides a private
    network, in words; "" when it covers nothing more. Default routes, loopback, link-local, multicast and the
    like, and a public range wider than a /8 (IPv4) or /16 (IPv6)."""
    net = ipaddress.ip_network(network)
    if net.prefixlen == 0:
        return f"every IPv{net.version} address (a default route: all of each device's traffic)"
    words = [what for special, what in _CAPTURED if special.version == net.version and net.overlaps(special)]
    wide = 8 if net.version == 4 else 16
    # The version check pairs an IPv4 network with IPv4 ones only, which the checker cannot follow.
    inside = any(p.version == net.version and net.subnet_of(p) for p in _PRIVATE)  # type: ignore[arg-type]
    if net.prefixlen < wide and not inside:
        words.append(f"{net.num_addresses:,} addresses, public ones among them")
    return ", ".join(dict.fromkeys(words))


def _same_network(text: str, network: str) -> bool:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=True)) == network
    except ValueError:
        return False


# --- Changes -------------------------------------------------------------------------------------------------


def _request(
    *, actor: User, kind: str, tunnel: Tunnel | None, params: dict[str, Any], request_origin: RequestOrigin
) -> TunnelChange:
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
    return changes.tunnel_change_start(change=change)


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
    assert zone is not None  # none is an error above
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
    confirm_network: str = "",
) -> TunnelChange:
    """Ask for a private route. One that captures more than a private network (route_capture) is refused until
    `confirm_network` names that same network: the operator ticked the box saying what it would capture."""
    try:
        network = validate_network(network)
    except ValidationError as exc:
        raise ValidationError({"network": exc.messages[0]}) from None
    if Route.objects.filter(network=network, virtual_network=virtual_network).exists():
        raise ValidationError({"network": f"{network} is already routed in {virtual_network.name}."})
    capture = route_capture(network)
    if capture and not _same_network(confirm_network, network):
        raise ValidationError(
            {
                "confirm_network": ValidationError(
                    "%(network)s would send %(capture)s through %(tunnel)s. Tick the box to add it anyway.",
                    code="capture",
                    params={"network": network, "capture": capture, "tunnel": tunnel.name},
                )
            }
        )
    params = {
        "network": network,
        "virtual_network": str(virtual_network.cf_id),
        "virtual_network_name": virtual_network.name,
        "comment": comment.strip()[:100],
    }
    if capture:
        params["confirmed_capture"] = capture
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
            # Nobody clicked: a read not sent is left quietly to the sync's rotation.
            queue.send_on_commit(tunnel_config_read, tunnel.pk, unsent_message=None)
    return bool(claimed)


def tunnel_change_retry(*, actor: User, change: TunnelChange, request_origin: RequestOrigin) -> TunnelChange:
    """Make a stopped change again, as it was asked."""
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators change tunnels.")
    if not change.retryable:
        raise ValidationError(f"{change.get_kind_display()} is not retried: ask for it again.")
    return changes.tunnel_change_retry(change=change, actor=actor, request_origin=request_origin)


# --- Tokens ---------------------------------------------------------------------------------------------------


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
