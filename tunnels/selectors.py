"""Reads for tunnels. Every signed-in person may read all of them; query counts do not grow with the fleet."""

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.paginator import Page, Paginator
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from alerts import selectors as alert_selectors
from tunnels import observed, uptime
from tunnels.models import (
    Connector,
    DnsRecord,
    PushChange,
    PushChangeStep,
    Route,
    StatusChange,
    SyncCursor,
    Tunnel,
    TunnelChange,
    VirtualNetwork,
)
from tunnels.sync import version_key

SORTS = {
    "name": ("name", "pk"),
    "status": ("status_rank", "name", "pk"),
    # Longest-running first; tunnels without a running connection last.
    "uptime": ("-has_uptime", "up_since", "name", "pk"),
    "created": ("-cf_created_at", "name", "pk"),
}


@dataclass
class TunnelFilters:
    q: str = ""
    status: str = ""
    version: str = ""
    vnet: str = ""
    sort: str = "status"


def status_counts() -> dict[str, int]:
    counts = dict(
        Tunnel.objects.filter(deleted_at__isnull=True).values_list("status").annotate(n=Count("pk")).order_by()
    )
    return {value: counts.get(value, 0) for value in Tunnel.Status.values}


def newest_version() -> str:
    versions = (
        Connector.objects.filter(tunnel__deleted_at__isnull=True)
        .values_list("version", flat=True)
        .order_by()
        .distinct()
    )
    return max((v for v in versions if v), key=version_key, default="")


def versions_known() -> list[str]:
    known = Connector.objects.values_list("version", flat=True).order_by().distinct()
    return sorted({v for v in known if v}, key=version_key)


def tunnels_filtered(*, filters: TunnelFilters) -> QuerySet[Tunnel]:
    qs = Tunnel.objects.filter(deleted_at__isnull=True)
    if filters.q:
        qs = qs.filter(name__icontains=filters.q)
    if filters.status in Tunnel.Status.values:
        qs = qs.filter(status=filters.status)
    if filters.version:
        qs = qs.filter(Exists(Connector.objects.filter(tunnel=OuterRef("pk"), version=filters.version)))
    if filters.vnet:
        qs = qs.filter(Exists(Route.objects.filter(tunnel=OuterRef("pk"), virtual_network__cf_id=filters.vnet)))
    qs = qs.annotate(has_uptime=Q(up_since__isnull=False))
    return qs.order_by(*SORTS.get(filters.sort, SORTS["status"]))


@dataclass
class Row:
    tunnel: Tunnel
    outdated: bool
    mixed: bool


def tunnel_page(
    *, filters: TunnelFilters, page: int, size: int = 50, counts: dict[str, int] | None = None
) -> tuple[Page, list[Row]]:
    paginator = Paginator(tunnels_filtered(filters=filters), size)
    if counts is not None and not (filters.q or filters.version or filters.vnet):
        # The per-status counts already say how many rows there are: spare the page a second scan.
        paginator.count = counts.get(filters.status, 0) if filters.status else sum(counts.values())
    current = paginator.get_page(page)
    newest = newest_version()
    rows = []
    for tunnel in current.object_list:
        versions = tunnel.version_list
        rows.append(
            Row(
                tunnel,
                outdated=bool(versions and newest and version_key(versions[0]) < version_key(newest)),
                mixed=len(versions) > 1,
            )
        )
    return current, rows


@dataclass(frozen=True)
class Picture:
    """How much of the account Gatehouse has read: every tunnel's status, connectors and configurations."""

    tunnels: int
    connectors_read: int
    remote: int
    configs_read: int

    @property
    def complete(self) -> bool:
        return self.connectors_read >= self.tunnels and self.configs_read >= self.remote


def picture() -> Picture:
    """One query, whatever the fleet's size."""
    live = Tunnel.objects.filter(deleted_at__isnull=True)
    counts = live.aggregate(
        tunnels=Count("pk"),
        connectors_read=Count("pk", filter=Q(connectors_synced_at__isnull=False)),
        remote=Count("pk", filter=Q(remote_config=True)),
        configs_read=Count("pk", filter=Q(remote_config=True, config_synced_at__isnull=False)),
    )
    return Picture(**counts)


def freshness() -> datetime | None:
    cursor = SyncCursor.objects.filter(name="status").first()
    return cursor.synced_at if cursor else None


def tunnel_get(*, cf_id) -> Tunnel:
    return get_object_or_404(Tunnel, cf_id=cf_id)


@dataclass
class Detail:
    tunnel: Tunnel
    connectors: list[Connector]
    routes: list[Route]
    dns_records: list[DnsRecord]
    windows: dict[str, uptime.Tally]
    days: list[uptime.DayCell]
    months: list[uptime.Month]
    history: list[StatusChange]
    alerts: list
    changes: list[TunnelChange]
    newest: str
    vnets: list[VirtualNetwork] = field(default_factory=list)


def tunnel_detail(*, tunnel: Tunnel, now: datetime | None = None) -> Detail:
    now = now or timezone.now()
    start = now - timedelta(days=90)
    recent = list(tunnel.status_changes.filter(at__gte=start).order_by("at", "id"))
    before = tunnel.status_changes.filter(at__lt=start).order_by("-at", "-id").first()
    pairs = uptime.as_pairs(([before] if before else []) + recent)
    seen = uptime.tunnel_observed(
        observed.spans(start, now), first_seen=tunnel.first_seen_at, deleted=tunnel.deleted_at, now=now
    )
    return Detail(
        tunnel=tunnel,
        connectors=list(tunnel.connectors.all()),
        routes=list(tunnel.routes.select_related("virtual_network")),
        dns_records=list(DnsRecord.objects.filter(tunnel_cf_id=tunnel.cf_id).select_related("zone")),
        windows=uptime.uptime_windows(pairs, now, observed=seen),
        days=uptime.day_cells(pairs, now, observed=seen),
        months=uptime.monthly(pairs, now, observed=seen),
        history=list(reversed(recent))[:20],
        alerts=alert_selectors.alerts_for_target(target_type="tunnel", target_id=str(tunnel.cf_id)),
        changes=list(tunnel.changes.select_related("actor")[:10]),
        newest=newest_version(),
        vnets=list(VirtualNetwork.objects.filter(deleted_at__isnull=True)),
    )


def dangling_dns_records() -> list[DnsRecord]:
    """CNAMEs to a tunnel that no longer exists (or never did)."""
    live = Tunnel.objects.filter(deleted_at__isnull=True, cf_id=OuterRef("tunnel_cf_id"))
    return list(DnsRecord.objects.filter(~Exists(live)).select_related("zone")[:100])


def change_get(*, public_id) -> TunnelChange:
    return get_object_or_404(TunnelChange.objects.select_related("tunnel", "actor"), public_id=public_id)


def push_change_get(*, public_id) -> PushChange:
    steps = Prefetch("steps", queryset=PushChangeStep.objects.order_by("position"))
    return get_object_or_404(PushChange.objects.prefetch_related(steps), public_id=public_id)


def virtual_networks() -> list[VirtualNetwork]:
    return list(VirtualNetwork.objects.filter(deleted_at__isnull=True))


def virtual_network_get(*, cf_id) -> VirtualNetwork:
    return get_object_or_404(VirtualNetwork, cf_id=cf_id, deleted_at__isnull=True)


def route_get(*, cf_id) -> Route:
    return get_object_or_404(Route.objects.select_related("tunnel"), cf_id=cf_id)


def virtual_networks_with_routes() -> list[VirtualNetwork]:
    """Live virtual networks, each with `route_total`."""
    return list(VirtualNetwork.objects.filter(deleted_at__isnull=True).annotate(route_total=Count("routes")))


def tunnel_delete_preview(*, tunnel: Tunnel) -> dict:
    """What deleting the tunnel would touch, as Gatehouse last saw it (the change reads Cloudflare again)."""
    connectors = list(tunnel.connectors.all())
    return {
        "routes": list(tunnel.routes.select_related("virtual_network")),
        "dns_records": list(DnsRecord.objects.filter(tunnel_cf_id=tunnel.cf_id).select_related("zone")),
        "serving": [c for c in connectors if c.conns_active],
        "stale": [c for c in connectors if not c.conns_active],
    }


@dataclass
class RouteRow:
    route: Route
    overlaps: list[str]


def routes_all(*, vnet: str = "") -> list[RouteRow]:
    qs = Route.objects.select_related("tunnel", "virtual_network").order_by("virtual_network__name", "network")
    if vnet:
        qs = qs.filter(virtual_network__cf_id=vnet)
    routes = list(qs)
    by_vnet: dict = {}
    for route in routes:
        by_vnet.setdefault(route.virtual_network_id, []).append(route)
    rows = []
    overlaps: dict[int, list[str]] = {}
    for group in by_vnet.values():
        nets = sorted(((ipaddress.ip_network(r.network, strict=False), r) for r in group), key=_net_order)
        # Sorted by address then prefix, a network overlaps the ones after it until one starts past its end.
        for i, (net, route) in enumerate(nets):
            for other_net, other in nets[i + 1 :]:
                if other_net.version != net.version or int(other_net.network_address) > int(net.broadcast_address):
                    break
                overlaps.setdefault(route.pk, []).append(other.network)
                overlaps.setdefault(other.pk, []).append(route.network)
    for route in routes:
        rows.append(RouteRow(route, overlaps.get(route.pk, [])))
    return rows


def _net_order(item):
    net, _route = item
    return (net.version, int(net.network_address), net.prefixlen)


def route_lookup(*, address: str, vnet: VirtualNetwork) -> Route | None:
    """The route that carries `address` in the virtual network: the longest matching prefix."""
    ip = ipaddress.ip_address(address)
    best = None
    for route in Route.objects.filter(virtual_network=vnet).select_related("tunnel", "virtual_network"):
        net = ipaddress.ip_network(route.network, strict=False)
        if ip.version == net.version and ip in net and (best is None or net.prefixlen > best[0].prefixlen):
            best = (net, route)
    return best[1] if best else None


def overview(*, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    changes = list(
        StatusChange.objects.filter(at__gte=now - timedelta(hours=24))
        .exclude(old_status="")
        .select_related("tunnel")
        .order_by("-at", "-id")[:15]
    )
    return {
        "tunnel_counts": status_counts(),
        "tunnel_changes": changes,
        "open_alerts": alert_selectors.alerts_open(limit=10),
        "open_alert_count": alert_selectors.alerts_open_count(),
        "freshness": freshness(),
    }


def connectors_explained(*, tunnel: Tunnel, connectors: list[Connector]) -> list[str]:
    """Plain words for "Degraded": which connector lost how many connections, where, and since when."""
    if tunnel.status != Tunnel.Status.DEGRADED:
        return []
    lines = []
    for connector in connectors:
        lost = [conn for conn in connector.conns if conn[2]]
        if not lost and connector.conns_total >= 4:
            continue
        colos = sorted({conn[0] for conn in lost if conn[0]})
        text = (
            f"Connector {str(connector.cf_id)[:8]} (origin {connector.origin_ip or 'unknown'}, cloudflared "
            f"{connector.version or 'unknown'}) has {connector.conns_active} of {connector.conns_total} "
            "connections open"
        )
        if colos:
            text += f"; the ones to {', '.join(colos)} are waiting to reconnect"
        lines.append(text + f", since about {tunnel.status_since:%Y-%m-%d %H:%M} UTC.")
    return lines or [f"Cloudflare reports the tunnel degraded since {tunnel.status_since:%Y-%m-%d %H:%M} UTC."]
