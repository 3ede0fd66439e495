"""One sync pass: tunnel status for the whole account, connectors within the API budget, slower parts in rotation.

Cost per pass: ceil(tunnels / 1000) calls for status. Connectors cost one call per tunnel, so they are fetched for
tunnels whose status or connection timestamps changed, then for the tunnels refreshed longest ago, with what is left
of this pass's slice of the background budget (the allowance spread evenly over the passes of one window). Virtual
networks, private routes, zones with their tunnel CNAMEs, and remote configurations refresh more slowly. Until every
tunnel's connectors have been read once, the first picture comes first (see `sync_pass`).

Each pass that reads the whole list also records that Gatehouse observed the account (`ObservedSpan`): uptime and
alerts count only observed time (the rule is in tunnels/uptime.py).

A refused call (our budget spent, or a 429 from Cloudflare) ends the pass early; the next pass starts where this
one left off, so nothing retries into the limit.
"""

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from dashboard.leases import Renewal, lease_seconds
from integrations import cloudflare as cf
from integrations import records
from tunnels import push
from tunnels.changes import public_hostnames_store
from tunnels.models import (
    Connector,
    DnsRecord,
    Route,
    StatusChange,
    SyncCursor,
    SyncPass,
    Tunnel,
    VirtualNetwork,
    Zone,
)
from tunnels.observed import observe
from tunnels.services import tunnel_alerts_evaluate

log = logging.getLogger(__name__)

_MAX_CONNS_KEPT = 16
SLOW_PARTS = ("virtual_networks", "routes", "dns")
# What one slower part usually costs (a few pages); one that costs more ends the pass at the budget, safely.
SLOW_PART_CALLS = 5


@dataclass
class Plan:
    """What this pass may spend.

    Rotations get an even slice of the background allowance per pass. Changed tunnels may use whatever the
    window has left, except what the status list needs for every remaining pass of the window: fresh status
    for the whole fleet comes first.
    """

    allowance: int
    passes_per_window: float
    per_pass: int
    spent_at_start: int

    @classmethod
    def now(cls) -> "Plan":
        budget = cf.budget()
        limits = budget.limits
        allowance = limits.allowance(cf.Priority.BACKGROUND)
        passes = max(1.0, limits.window / settings.GATEHOUSE_TUNNEL_SYNC_SECONDS)
        return cls(
            allowance=allowance,
            passes_per_window=passes,
            per_pass=max(1, int(allowance / passes)),
            spent_at_start=budget.used(),
        )

    def spent(self) -> int:
        return max(0, cf.budget().used() - self.spent_at_start)

    def rotation(self, list_calls: int) -> int:
        """This pass's slice, less what it already spent, never touching the status list's reserve."""
        return min(max(0, self.per_pass - self.spent()), self.for_changes(list_calls))

    def for_changes(self, list_calls: int) -> int:
        reserve = int(list_calls * self.passes_per_window)
        return max(0, self.allowance - self.spent_at_start - self.spent() - reserve)


@dataclass
class Outcome:
    changed: list[Tunnel] = field(default_factory=list)
    deleted: list[Tunnel] = field(default_factory=list)
    list_calls: int = 0


def _lease(now: datetime) -> datetime | None:
    """Only one pass at a time: a conditional update that must change exactly one row. The end of the lease this
    pass holds, or None when another pass holds it."""
    SyncCursor.objects.get_or_create(name="pass")
    until = now + timedelta(seconds=lease_seconds())
    taken = SyncCursor.objects.filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now), name="pass").update(
        leased_until=until
    )
    return until if taken else None


def _renew(record_id: int, held: list[datetime], until: datetime) -> bool:
    """The pass goes on: the lease it holds, and the pass's own, move to `until`; False once the lease is another
    pass's (this one's lapsed and was taken) or the pass was ended."""
    if not SyncCursor.objects.filter(name="pass", leased_until=held[0]).update(leased_until=until):
        return False
    held[0] = until
    return bool(SyncPass.objects.filter(pk=record_id, finished_at__isnull=True).update(lease_until=until))


def _release(held: datetime) -> None:
    """Give the lease back, if it is still this pass's."""
    SyncCursor.objects.filter(name="pass", leased_until=held).update(leased_until=None)


def _cursor_due(name: str, every: float, now: datetime) -> bool:
    cursor = SyncCursor.objects.filter(name=name).first()
    return cursor is None or cursor.synced_at is None or cursor.synced_at <= now - timedelta(seconds=every)


def _cursor_mark(name: str, now: datetime) -> None:
    SyncCursor.objects.update_or_create(name=name, defaults={"synced_at": now})


def picture_complete() -> bool:
    """Every live tunnel's connectors have been read at least once since Gatehouse first saw it."""
    return not Tunnel.objects.filter(deleted_at__isnull=True, connectors_synced_at__isnull=True).exists()


def sync_pass() -> SyncPass | None:
    """Run one pass; None when another pass holds the lease.

    Until the account's picture is complete (the first sync, or a burst of new tunnels), the pass spends what
    the window allows on what a person looks at first: status for all, then connectors of the tunnels that are
    not healthy, then routes, virtual networks and DNS, then the connectors of the rest, worst first.
    Configurations are read lazily: when someone opens a remotely managed tunnel's page (`config_read`, queued
    at interactive priority), and in rotation once the picture is complete.
    """
    now = timezone.now()
    leased = _lease(now)
    if leased is None:
        return None
    held = [leased]
    record = SyncPass.objects.create(started_at=now, lease_until=leased)
    plan = Plan.now()
    slow: list[str] = []
    outcome = Outcome()
    try:
        with Renewal(lambda until: _renew(record.pk, held, until)):
            if _status_list_due(now):
                outcome = _sync_status(record, now)
                _cursor_mark("status", now)
            # While Cloudflare's push events are relied on, the time between two reads of the list is observed too.
            observe(now)
            # Tunnels not healthy first: changed ones, and inactive ones never read (they are not due, having no
            # connection to lose, but a first picture reads them too).
            due = sorted(
                Tunnel.objects.filter(
                    Q(connectors_due=True) | Q(status=Tunnel.Status.INACTIVE, connectors_synced_at__isnull=True),
                    deleted_at__isnull=True,
                ),
                key=_worst,
            )
            unhealthy = [t for t in due if t.status != Tunnel.Status.HEALTHY]
            for tunnel in unhealthy[: plan.for_changes(outcome.list_calls)]:
                _sync_connectors(tunnel, now)
                record.connectors_fetched += 1
            for part in SLOW_PARTS:
                # A slower part waits for a pass with room for it, so it never eats the status list's reserve.
                if plan.for_changes(outcome.list_calls) < SLOW_PART_CALLS:
                    break
                if not _cursor_due(part, settings.GATEHOUSE_TUNNEL_SLOW_SYNC_SECONDS, now):
                    continue
                {"virtual_networks": _sync_vnets, "routes": _sync_routes, "dns": _sync_dns}[part]()
                _cursor_mark(part, now)
                slow.append(part)
            healthy = [t for t in due if t.status == Tunnel.Status.HEALTHY]
            for tunnel in healthy[: plan.for_changes(outcome.list_calls)]:
                _sync_connectors(tunnel, now)
                record.connectors_fetched += 1
            rotation = (
                Tunnel.objects.filter(Q(connectors_synced_at__isnull=True) | Q(connectors_synced_at__lt=now))
                .filter(deleted_at__isnull=True)
                .exclude(status=Tunnel.Status.INACTIVE, connectors_synced_at__isnull=False)
                .order_by(F("connectors_synced_at").asc(nulls_first=True), "status_rank", "pk")
            )
            if not picture_complete():
                # Until every tunnel has been read once, the window's whole remainder goes to tunnels never read.
                never_read = rotation.filter(connectors_synced_at__isnull=True)
                for tunnel in never_read[: plan.for_changes(outcome.list_calls)]:
                    _sync_connectors(tunnel, now)
                    record.connectors_fetched += 1
            if picture_complete():
                configs_due = Tunnel.objects.filter(
                    Q(config_synced_at__isnull=True)
                    | Q(config_synced_at__lte=now - timedelta(seconds=settings.GATEHOUSE_TUNNEL_CONFIG_SYNC_SECONDS)),
                    deleted_at__isnull=True,
                    remote_config=True,
                ).order_by(F("config_synced_at").asc(nulls_first=True), "pk")
                for tunnel in configs_due[: plan.rotation(outcome.list_calls) // 6]:
                    _sync_config(tunnel, now)
                    record.configs_fetched += 1
            for tunnel in rotation[: plan.rotation(outcome.list_calls)]:
                _sync_connectors(tunnel, now)
                record.connectors_fetched += 1
        record.complete = True
    except cf.CloudflareError as exc:
        record.error = exc.message[:500]
        log.warning("sync pass stopped early: %s", exc.message)
    except Exception as exc:
        record.error = f"Gatehouse could not finish this pass ({type(exc).__name__}); the worker's log says why."
        raise
    finally:
        record.api_calls = plan.spent()
        record.slow_parts = ",".join(slow)
        record.finished_at = timezone.now()
        record.lease_until = None
        record.save()
        _release(held[0])
    tunnel_alerts_evaluate(now=record.finished_at, deleted=outcome.deleted)
    return record


def _status_list_due(now: datetime) -> bool:
    """Every pass reads the whole list, except while push events arrive (tunnels/push.py): then only every
    GATEHOUSE_TUNNEL_PUSH_STATUS_SECONDS, or at once after a notification about a tunnel Gatehouse does not know.
    The calls saved go to connector rotation."""
    return not push.trusted(now) or _cursor_due("status", settings.GATEHOUSE_TUNNEL_PUSH_STATUS_SECONDS, now)


def _worst(tunnel: Tunnel) -> tuple[int, str]:
    return tunnel.status_rank, tunnel.name


def _sync_status(record: SyncPass, now: datetime) -> Outcome:
    listed: dict[uuid.UUID, records.Tunnel] = {}
    page = 1
    calls = 0
    while True:
        items, total = cf.tunnels_page(page)
        calls += 1
        for item in items:
            listed[item.id] = item
        # Cloudflare may use a smaller page than the one asked for, so a short page is not the last one: only
        # the total, or an empty page, says the list is complete.
        if not items or (total is not None and len(listed) >= total):
            break
        page += 1
    record.tunnels_seen = len(listed)
    # Every row, deleted ones too, rather than an IN list as long as the fleet (SQLite caps query parameters).
    known = {t.cf_id: t for t in Tunnel.objects.order_by()}
    outcome = Outcome(list_calls=calls)
    new, updated, changes = [], [], []
    for cf_id, item in listed.items():
        status = item.status
        active_at, inactive_at = item.conns_active_at, item.conns_inactive_at
        tunnel = known.get(cf_id)
        if tunnel is None:
            tunnel = Tunnel(
                cf_id=cf_id,
                name=item.name,
                status=status,
                status_rank=Tunnel.Status(status).rank,
                status_since=_since("", status, active_at, inactive_at, now),
                remote_config=item.remote_config,
                cf_created_at=item.created_at,
                conns_active_at=active_at,
                conns_inactive_at=inactive_at,
                first_seen_at=now,
                connectors_due=status != Tunnel.Status.INACTIVE,
            )
            new.append(tunnel)
            changes.append(StatusChange(tunnel=tunnel, at=tunnel.status_since, old_status="", new_status=status))
            continue
        dirty = False
        if tunnel.name != item.name or tunnel.remote_config != item.remote_config or tunnel.deleted_at:
            tunnel.name, tunnel.remote_config, tunnel.deleted_at = item.name, item.remote_config, None
            dirty = True
        if (tunnel.status, tunnel.conns_active_at, tunnel.conns_inactive_at) != (status, active_at, inactive_at):
            if tunnel.status != status:
                since = max(_since(tunnel.status, status, active_at, inactive_at, now), tunnel.status_since)
                changes.append(StatusChange(tunnel=tunnel, at=since, old_status=tunnel.status, new_status=status))
                tunnel.status, tunnel.status_rank, tunnel.status_since = status, Tunnel.Status(status).rank, since
                outcome.changed.append(tunnel)
            tunnel.conns_active_at, tunnel.conns_inactive_at = active_at, inactive_at
            tunnel.connectors_due = True
            dirty = True
        if dirty:
            updated.append(tunnel)
    with transaction.atomic():
        Tunnel.objects.bulk_create(new, batch_size=500)
        Tunnel.objects.bulk_update(
            updated,
            [
                "name",
                "remote_config",
                "deleted_at",
                "status",
                "status_rank",
                "status_since",
                "conns_active_at",
                "conns_inactive_at",
                "connectors_due",
            ],
            batch_size=500,
        )
        StatusChange.objects.bulk_create(changes, batch_size=500)
        # The list leaves deleted tunnels out: a live tunnel it no longer names has been deleted. Its history stays.
        outcome.deleted = [t for cf_id, t in known.items() if cf_id not in listed and t.deleted_at is None]
        pks = [t.pk for t in outcome.deleted]
        for start in range(0, len(pks), 500):
            Tunnel.objects.filter(pk__in=pks[start : start + 500]).update(deleted_at=now, connectors_due=False)
    record.status_changes = len(changes) - len(new)
    return outcome


def _since(old: str, status: str, active_at: datetime | None, inactive_at: datetime | None, now: datetime) -> datetime:
    """When the new status began: Cloudflare's own timestamp when it marks this change, else the time of this pass.

    conns_active_at marks the start of serving and conns_inactive_at its end; a move between healthy and degraded
    has no timestamp of its own.
    """
    candidate = None
    if status in ("healthy", "degraded") and old not in ("healthy", "degraded") and inactive_at is None:
        candidate = active_at
    elif status == "down":
        candidate = inactive_at
    if candidate and candidate <= now:
        return candidate
    return now


def _sync_connectors(tunnel: Tunnel, now: datetime) -> None:
    try:
        items = cf.tunnel_connectors(str(tunnel.cf_id))
    except cf.CloudflareNotFound:
        items = []
    rows: dict[uuid.UUID, Connector] = {}
    for item in items:
        conns = item.conns
        opened = [c.opened_at for c in conns if c.opened_at and not c.is_pending_reconnect]
        rows[item.id] = Connector(
            tunnel=tunnel,
            cf_id=item.id,
            version=item.version,
            arch=item.arch,
            run_at=item.run_at,
            config_version=item.config_version,
            origin_ip=next((c.origin_ip for c in conns if c.origin_ip), ""),
            colos=",".join(sorted({c.colo_name for c in conns} - {""}))[:100],
            conns_total=len(conns),
            conns_pending=sum(1 for c in conns if c.is_pending_reconnect),
            opened_at=min(opened) if opened else None,
            conns=[
                [c.colo_name, c.opened_at.isoformat() if c.opened_at else "", c.is_pending_reconnect]
                for c in conns[:_MAX_CONNS_KEPT]
            ],
        )
    opened_all = [r.opened_at for r in rows.values() if r.opened_at]
    versions = sorted({r.version for r in rows.values() if r.version}, key=version_key)
    with transaction.atomic():
        Connector.objects.filter(tunnel=tunnel).delete()
        Connector.objects.bulk_create(rows.values())
        Tunnel.objects.filter(pk=tunnel.pk).update(
            connectors_due=False,
            connectors_synced_at=now,
            connector_count=len(rows),
            # Cloudflare's definition of uptime: since the first of the current connections opened.
            up_since=min(opened_all) if opened_all else None,
            versions=",".join(versions)[:200],
        )


def version_key(version: str) -> tuple:
    parts = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _sync_config(tunnel: Tunnel, now: datetime, *, priority: cf.Priority = cf.Priority.BACKGROUND) -> None:
    try:
        configuration = cf.tunnel_configuration(str(tunnel.cf_id), priority=priority)
    except cf.CloudflareNotFound:
        configuration = records.TunnelConfiguration.from_sdk(None)
    public_hostnames_store(tunnel=tunnel, configuration=configuration, now=now)


def config_read(tunnel: Tunnel) -> None:
    """Read one remotely managed tunnel's configuration now, for someone looking at its page."""
    _sync_config(tunnel, timezone.now(), priority=cf.Priority.INTERACTIVE)


def _sync_vnets() -> None:
    seen = set()
    for item in cf.virtual_networks():
        seen.add(item.id)
        VirtualNetwork.objects.update_or_create(
            cf_id=item.id,
            defaults={"name": item.name, "comment": item.comment, "is_default": item.is_default, "deleted_at": None},
        )
    VirtualNetwork.objects.filter(deleted_at__isnull=True).exclude(cf_id__in=seen).update(deleted_at=timezone.now())


def _sync_routes() -> None:
    items = cf.routes_all()
    tunnels: dict[uuid.UUID | None, int] = dict(Tunnel.objects.values_list("cf_id", "pk"))
    vnets: dict[uuid.UUID | None, int] = dict(VirtualNetwork.objects.values_list("cf_id", "pk"))
    existing = {r.cf_id: r for r in Route.objects.all()}
    new, updated, seen = [], [], set()
    for item in items:
        seen.add(item.id)
        values = {
            "network": item.network,
            "tunnel_cf_id": item.tunnel_id,
            "tunnel_id": tunnels.get(item.tunnel_id),
            "virtual_network_id": vnets.get(item.virtual_network_id),
            "comment": item.comment,
            "cf_created_at": item.created_at,
        }
        route = existing.get(item.id)
        if route is None:
            new.append(Route(cf_id=item.id, **values))
        elif any(getattr(route, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(route, k, v)
            updated.append(route)
    with transaction.atomic():
        Route.objects.bulk_create(new, batch_size=500)
        Route.objects.bulk_update(updated, list(values) if updated else ["network"], batch_size=500)
        stale = [r.pk for cf_id, r in existing.items() if cf_id not in seen]
        for start in range(0, len(stale), 500):
            Route.objects.filter(pk__in=stale[start : start + 500]).delete()
        _recount_routes()


def _recount_routes() -> None:
    counts = dict(Tunnel.objects.annotate(n=Count("routes")).filter(~Q(n=0) | ~Q(route_count=0)).values_list("pk", "n"))
    for pk, n in counts.items():
        Tunnel.objects.filter(pk=pk).exclude(route_count=n).update(route_count=n)


def _sync_dns() -> None:
    seen_zones = set()
    for item in cf.zones():
        zone, _ = Zone.objects.update_or_create(cf_id=item.id, defaults={"name": item.name})
        seen_zones.add(zone.pk)
        rows = {
            r.id: DnsRecord(
                cf_id=r.id,
                zone=zone,
                name=r.name,
                content=r.content,
                proxied=r.proxied,
                tunnel_cf_id=r.tunnel_id,
            )
            for r in cf.tunnel_dns_records(zone.cf_id)
        }
        with transaction.atomic():
            DnsRecord.objects.filter(zone=zone).delete()
            DnsRecord.objects.bulk_create(rows.values())
    Zone.objects.exclude(pk__in=seen_zones).delete()
