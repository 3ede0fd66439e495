"""Reads for discovery. The catalogue pages by keyset on indexed (sort column, id) pairs, so a page costs the
same few queries at a hundred origins and at a hundred thousand."""

import datetime as dt
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import BooleanField, F, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.shortcuts import get_object_or_404

from discovery.models import (
    Application,
    IngestRun,
    InventoryRun,
    Origin,
    OriginDaily,
    ProtectionChange,
    ReviewEvent,
    ip_key,
)

SORTS = {"users": "users", "sessions": "sessions", "bytes": "bytes_total", "last_seen": "last_seen"}
SOURCES = ("traffic", "inventory", "both")


@dataclass(frozen=True)
class OriginFilters:
    review_state: str = ""
    vnet_id: str = ""
    protocol: str = ""
    port: int | None = None
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    source: str = ""
    covered: bool | None = None
    application: Application | None = None
    text: str = ""
    # True: only origins some private route carries; False: only those none does.
    routed: bool | None = None


@dataclass(frozen=True)
class RouteName:
    """A private route as the catalogue and the origin page name it: its network and the tunnel that carries it."""

    network: str
    tunnel_name: str
    tunnel_cf_id: str


@dataclass
class RouteTable:
    """The synchronised private routes, read once, for any number of origins: the longest prefix in the origin's
    virtual network (the default network for an origin whose network is unknown), as the origin page names it."""

    known: bool
    default_vnet: str
    # virtual network id -> [(network, route)], longest prefix first
    by_vnet: dict[str, list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, RouteName]]]

    def lookup(self, origin: Origin) -> RouteName | None:
        if not self.known or not origin.ip_key:
            return None
        ip = ipaddress.ip_address(origin.address)
        for network, route in self.by_vnet.get(origin.vnet_id or self.default_vnet, []):
            if ip.version == network.version and ip in network:
                return route
        return None

    def carried(self) -> RawSQL:
        """A condition on origins: some route carries it (its ip_key lies in a route's range in its network).

        One SQL expression with parameters rather than a tree of Q objects: an account's hundreds of routes
        would otherwise cost more to compile than the query costs to run.
        """
        parts, params = [], []
        for vnet, routes in self.by_vnet.items():
            vnets = [vnet, ""] if vnet == self.default_vnet else [vnet]
            spans = _merged([(ip_key(str(n.network_address)), ip_key(str(n.broadcast_address))) for n, _ in routes])
            ranges = " OR ".join(['"discovery_origin"."ip_key" BETWEEN %s AND %s'] * len(spans))
            marks = ", ".join(["%s"] * len(vnets))
            # The network first: a row of another network is passed over without looking at its ranges.
            parts.append(f'("discovery_origin"."vnet_id" IN ({marks}) AND ({ranges}))')
            params += vnets + [key for span in spans for key in span]
        sql = f"({' OR '.join(parts) or '1 = 0'})"  # only placeholders; every value is a parameter
        return RawSQL(sql, params, output_field=BooleanField())  # noqa: S611


def _merged(ranges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    merged: list[list[str]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return [(low, high) for low, high in merged]


def route_table() -> RouteTable:
    """Two queries whatever the number of origins it is asked about."""
    from tunnels.models import Route, VirtualNetwork

    networks = dict(VirtualNetwork.objects.filter(deleted_at__isnull=True).values_list("cf_id", "is_default"))
    default = next((str(cf_id) for cf_id, is_default in networks.items() if is_default), "")
    by_vnet: dict[str, list] = {}
    known = False
    rows = Route.objects.order_by("id").values_list("network", "virtual_network__cf_id", "tunnel__name", "tunnel_cf_id")
    for network_text, vnet, tunnel_name, tunnel_cf_id in rows:
        known = True
        if vnet not in networks:
            continue
        try:
            network = ipaddress.ip_network(network_text, strict=False)
        except ValueError:
            continue
        route = RouteName(network=network_text, tunnel_name=tunnel_name or "", tunnel_cf_id=str(tunnel_cf_id))
        by_vnet.setdefault(str(vnet), []).append((network, route))
    for routes in by_vnet.values():
        routes.sort(key=lambda item: -item[0].prefixlen)
    return RouteTable(known=known, default_vnet=default, by_vnet=by_vnet)


def origins_filtered(*, filters: OriginFilters, routes: RouteTable | None = None) -> QuerySet[Origin]:
    qs = Origin.objects.all()
    if filters.review_state:
        qs = qs.filter(review_state=filters.review_state)
    if filters.vnet_id:
        qs = qs.filter(vnet_id=filters.vnet_id)
    if filters.protocol:
        qs = qs.filter(protocol=filters.protocol)
    if filters.port is not None:
        qs = qs.filter(port=filters.port)
    if filters.cidr is not None:
        low, high = filters.cidr.network_address, filters.cidr.broadcast_address
        qs = qs.filter(ip_key__gte=ip_key(str(low)), ip_key__lte=ip_key(str(high)))
    if filters.source == "traffic":
        qs = qs.filter(seen_in_traffic=True, seen_in_inventory=False)
    elif filters.source == "inventory":
        qs = qs.filter(seen_in_traffic=False, seen_in_inventory=True)
    elif filters.source == "both":
        qs = qs.filter(seen_in_traffic=True, seen_in_inventory=True)
    if filters.covered is True:
        qs = qs.filter(application__protection=Application.Protection.PROTECTED)
    elif filters.covered is False:
        qs = qs.exclude(application__protection=Application.Protection.PROTECTED)
    if filters.application is not None:
        qs = qs.filter(application=filters.application)
    if filters.text:
        # Address, network and tunnel ids, hostnames and inventory words, from one trigram index.
        qs = qs.filter(search_text__has=filters.text.lower())
    if filters.routed is not None:
        carried = (routes or route_table()).carried()
        qs = qs.filter(carried) if filters.routed else qs.exclude(carried)
    return qs


@dataclass(frozen=True)
class Cursor:
    """Where the previous page ended: the sort value of its last row (None for no value) and that row's id."""

    value: int | dt.datetime | None
    id: int

    def encode(self) -> str:
        if isinstance(self.value, dt.datetime):
            value = f"t{self.value.timestamp():.6f}"
        elif self.value is None:
            value = "n"
        else:
            value = f"i{self.value}"
        return f"{value}_{self.id}"

    @classmethod
    def decode(cls, text: str) -> "Cursor | None":
        try:
            value, row_id = text.rsplit("_", 1)
            parsed: int | dt.datetime | None
            if value == "n":
                parsed = None
            elif value.startswith("t"):
                parsed = dt.datetime.fromtimestamp(float(value[1:]), dt.UTC)
            elif value.startswith("i"):
                parsed = int(value[1:])
            else:
                return None
            return cls(parsed, int(row_id))
        except (ValueError, OverflowError, OSError):
            return None


@dataclass(frozen=True)
class OriginPage:
    origins: list[Origin]
    next_cursor: str | None
    is_first: bool


@dataclass(frozen=True)
class CatalogueRow:
    """An origin as the catalogue shows it: with its virtual network's name and the route that carries it."""

    origin: Origin
    vnet_name: str
    route: object | None


def catalogue_rows(*, origins: list[Origin], routes: RouteTable, names: dict[str, str]) -> list[CatalogueRow]:
    return [CatalogueRow(o, names.get(o.vnet_id, ""), routes.lookup(o)) for o in origins]


def origin_page(
    *, filters: OriginFilters, sort: str, after: Cursor | None, size: int, routes: RouteTable | None = None
) -> OriginPage:
    column = SORTS.get(sort, "users")
    qs = origins_filtered(filters=filters, routes=routes).select_related("application")
    if filters.source == "inventory":
        # Origins nobody reached have no users, sessions, bytes or last seen: every sort is by id alone, which
        # spares the database a walk down a sort index past all the origins with traffic.
        if after is not None:
            qs = qs.filter(id__lt=after.id)
        rows = list(qs.order_by("-id")[: size + 1])
        more = len(rows) > size
        rows = rows[:size]
        cursor = Cursor(getattr(rows[-1], column), rows[-1].id).encode() if more else None
        return OriginPage(origins=rows, next_cursor=cursor, is_first=after is None)
    if after is not None:
        if after.value is None:
            qs = qs.filter(**{f"{column}__isnull": True, "id__lt": after.id})
        else:
            later = Q(**{f"{column}__lt": after.value}) | Q(**{column: after.value, "id__lt": after.id})
            if column == "last_seen":
                later |= Q(last_seen__isnull=True)
            qs = qs.filter(later)
    if column == "last_seen":
        # Origins never seen in traffic go last; the index on last_seen is declared in this same order.
        qs = qs.order_by(F("last_seen").desc(nulls_last=True), F("id").desc())
    else:
        qs = qs.order_by(f"-{column}", "-id")
    rows = list(qs[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    cursor = Cursor(getattr(rows[-1], column), rows[-1].id).encode() if more else None
    return OriginPage(origins=rows, next_cursor=cursor, is_first=after is None)


def origins_by_public_ids(*, public_ids: list) -> list[Origin]:
    return list(Origin.objects.filter(public_id__in=public_ids).order_by("id"))


def origin_get(*, public_id) -> Origin:
    return get_object_or_404(Origin.objects.select_related("application"), public_id=public_id)


@dataclass(frozen=True)
class Bar:
    day: dt.date
    value: int
    height: int  # in chart units, 1..100
    x: int

    @property
    def y(self) -> int:
        return 100 - self.height


def _bars(days: list[OriginDaily], attr: str) -> list[Bar]:
    peak = max((getattr(d, attr) for d in days), default=0) or 1
    return [
        Bar(day=d.day, value=getattr(d, attr), height=max(1, round(100 * getattr(d, attr) / peak)), x=i * 10)
        for i, d in enumerate(days)
    ]


@dataclass
class OriginDetail:
    origin: Origin
    session_bars: list[Bar]
    user_bars: list[Bar]
    history: list[ReviewEvent]
    route: object | None
    route_known: bool
    vnet_name: str


CHART_DAYS = 30


def origin_detail(*, origin: Origin) -> OriginDetail:
    days = list(reversed(OriginDaily.objects.filter(origin=origin).order_by("-day")[:CHART_DAYS]))
    history = list(ReviewEvent.objects.filter(origin=origin)[:50])
    routes = route_table()
    route, route_known = routes.lookup(origin), routes.known and origin.is_ip
    return OriginDetail(
        origin=origin,
        session_bars=_bars(days, "sessions"),
        user_bars=_bars(days, "users"),
        history=history,
        route=route,
        route_known=route_known,
        vnet_name=vnet_names().get(origin.vnet_id, ""),
    )


def applications() -> QuerySet[Application]:
    from django.db.models import Count

    return Application.objects.annotate(origin_count=Count("origins")).order_by("name")


def application_get(*, public_id) -> Application:
    return get_object_or_404(Application, public_id=public_id)


def protection_change_latest(*, application: Application) -> ProtectionChange | None:
    """The application's most recent change to Access, with its steps."""
    return application.protection_changes.prefetch_related("steps").first()


@dataclass(frozen=True)
class MemberOrigin:
    """An origin of an application, with its virtual network's name where the tunnels app knows it."""

    origin: Origin
    vnet_name: str


def application_origins(*, application: Application) -> list[MemberOrigin]:
    origins = list(application.origins.order_by("address", "port", "protocol")[:500])
    names = vnet_names() if origins else {}
    return [MemberOrigin(o, names.get(o.vnet_id, "")) for o in origins]


def ingest_runs(*, limit: int = 20) -> list[IngestRun]:
    return list(IngestRun.objects.all()[:limit])


@dataclass(frozen=True)
class Freshness:
    """How current the traffic data is, rather than what the latest pass did (usually nothing between
    deliveries): the newest session counted, the objects still waiting, and the last pass that read lines."""

    newest_session: dt.datetime | None
    objects_waiting: int
    last_reading_run: IngestRun | None
    last_run: IngestRun | None


def freshness() -> Freshness:
    from django.db.models import Max

    from discovery.models import LogObject

    return Freshness(
        newest_session=Origin.objects.aggregate(newest=Max("last_seen"))["newest"],
        objects_waiting=LogObject.objects.exclude(state=LogObject.State.DONE).count(),
        last_reading_run=IngestRun.objects.filter(records__gt=0).first(),
        last_run=IngestRun.objects.first(),
    )


def origins_for_export(*, filters: OriginFilters, routes: RouteTable) -> Iterator[Origin]:
    """Every origin the filters select, busiest first, read in chunks so memory does not follow the catalogue."""
    qs = origins_filtered(filters=filters, routes=routes).select_related("application").order_by("-users", "-id")
    return qs.iterator(chunk_size=2000)


def last_inventory_run() -> InventoryRun | None:
    return InventoryRun.objects.filter(finished_at__isnull=False).first()


def vnet_names() -> dict[str, str]:
    """Virtual network names by id, when the tunnels app has synchronised them; ids are shown otherwise."""
    try:
        from tunnels.models import VirtualNetwork
    except ImportError:
        return {}
    return {str(v.cf_id): v.name for v in VirtualNetwork.objects.all()[:1000]}
