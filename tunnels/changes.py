"""Carrying out the changes operators ask for at Cloudflare (tunnels.services records the request): the operation
engine for tunnel changes, and an executor per kind of change. The engine carries out one change per tunnel at a
time: a change asked while another to its tunnel is under way waits its turn.

A new tunnel's token is the one secret here: the executor hands it to the engine, which keeps it sealed on the
change row for its creator to see once (tunnels.services.tunnel_token_take).
"""

import base64
import contextlib
import copy
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from alerts.services import alert_resolve
from dashboard import queue
from dashboard.models import User
from dashboard.operations import Engine, StepFailed, StepWait, WhenBusy
from dashboard.requestinfo import RequestOrigin
from dashboard.sealing import Purpose, seal
from dashboard.services import audit_record
from integrations import cloudflare as cf
from integrations import records
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
# How long a change whose tunnel's configuration kept changing at Cloudflare waits before reading it again.
BUSY_WAIT_SECONDS = 30.0
# Reads of a configuration someone else keeps changing before Gatehouse gives up for now.
CONFIG_ATTEMPTS = 3


class ChangeRefused(StepFailed):
    """Cloudflare's state makes the change impossible; the reason is shown to the operator."""


class TunnelBusy(StepWait):
    """The tunnel's configuration kept changing at Cloudflare: the task tries again later."""

    def __init__(self, reason: str):
        super().__init__(BUSY_WAIT_SECONDS, reason=reason)


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


class TunnelChanges(Engine[TunnelChange, TunnelChangeStep, _Carrying]):
    """A change is one step: its executor, one change per tunnel at a time (a later one waits its turn). The audit
    keeps the actions tunnel changes have always written: one for the change made, `tunnel.change_failed` for one
    that stopped."""

    run_model = TunnelChange
    step_model = TunnelChangeStep
    # No related rows loaded with the locked change (`related`): its tunnel and actor may be null, and PostgreSQL
    # cannot lock the nullable side of an outer join. A change without a tunnel (a new one, a virtual network's)
    # has no subject and waits for nothing.
    subject = "tunnel"
    when_busy = WhenBusy.WAIT
    retry_first = 4.0

    def enqueue(self, run_id: int, *, countdown: float = 0.0) -> None:
        from tunnels.tasks import tunnel_change_run

        queue.send(tunnel_change_run, run_id, countdown=countdown)

    def receipt(self, run: TunnelChange) -> _Carrying:
        return _Carrying(change=run)

    def busy_message(self, active: TunnelChange) -> str:
        return f"Wait until the change to this tunnel in progress ({active.get_kind_display().lower()}) is done."

    def waiting_message(self, ahead: TunnelChange) -> str:
        return f"Waiting for the change asked before it ({ahead.get_kind_display().lower()}: {ahead.summary})."

    def execute(self, step: TunnelChangeStep, receipt: _Carrying) -> None:
        change = receipt.change
        try:
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


def tunnel_change_drive(task: Any, change_id: int) -> None:
    """The task's work: the change's steps, with the engine's retries and backoff."""
    _ENGINE.drive(task, change_id)


def tunnel_change_retry(*, change: TunnelChange, actor: User, request_origin: RequestOrigin) -> TunnelChange:
    """Go on with a stopped change from its step: each executor reads Cloudflare afresh before it writes."""
    return _ENGINE.retry(run_id=change.pk, actor=actor, request_origin=request_origin)


def tunnel_change_start(*, change: TunnelChange) -> TunnelChange:
    """Record the change (unsaved, checked) with its one step; its task is sent once this commits, and it waits
    for any change asked before it to the same tunnel."""
    return _ENGINE.start(change, steps=[(change.kind, change.get_kind_display())])


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
    theirs, and their change stays. The engine runs one change per tunnel at a time, so no other Gatehouse change
    interleaves.
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


def _tunnel(change: TunnelChange) -> Tunnel:
    """The tunnel a change to an existing tunnel is for (tunnel rows are only ever marked deleted, never removed)."""
    if change.tunnel is None:
        raise StepFailed("This change's tunnel is no longer known to Gatehouse.")
    return change.tunnel


def _execute_hostname_add(change: TunnelChange) -> tuple[dict, None]:
    tunnel, hostname, service = _tunnel(change), change.params["hostname"], change.params["service"]
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
    tunnel, hostname = _tunnel(change), change.params["hostname"]
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
    tunnel = _tunnel(change)
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
    tunnel = _tunnel(change)
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
    alert_resolve(dedupe_key=tunnel.alert_key, body=f"Tunnel {tunnel.name} was deleted.")
    return {
        "tunnel": tunnel_id,
        "routes_removed": routes_removed,
        "dns_removed": sorted(dns_removed),
        "dns_left": sorted(dns_left),
        "connectors_removed_count": len(connectors),
    }, None


def _execute_connections_cleanup(change: TunnelChange) -> tuple[dict, None]:
    """Remove, one by one, the connectors that hold no open connection; a serving connector stays."""
    tunnel = _tunnel(change)
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
    tunnel_id = str(_tunnel(change).cf_id)
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
