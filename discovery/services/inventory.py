"""The AWS inventory: the addresses AWS lists in each region recorded as origins, each VPC with its virtual network."""

import functools
import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from dashboard.leases import Renewal, lease_seconds
from dashboard.transactions import again_on_deadlock
from discovery.models import InventoryRun, Origin, Protocol, ip_key
from integrations import aws

log = logging.getLogger(__name__)


def vpc_virtual_networks(vpcs: dict[str, list[str]]) -> dict[str, str]:
    """Each VPC's virtual network: the one whose private routes cover the most of the VPC's address blocks.
    A VPC no route reaches, or that two networks cover alike (overlapping address spaces), gets none."""
    import ipaddress

    from tunnels.models import Route

    routes: dict[str, list] = {}
    for network, vnet_id in Route.objects.filter(
        virtual_network__isnull=False, virtual_network__deleted_at__isnull=True
    ).values_list("network", "virtual_network__cf_id"):
        try:
            routes.setdefault(str(vnet_id), []).append(ipaddress.ip_network(network, strict=False))
        except ValueError:
            continue
    found = {}
    for vpc, blocks in vpcs.items():
        coverage: dict[str, int] = {}
        for block in blocks:
            try:
                cidr = ipaddress.ip_network(block, strict=False)
            except ValueError:
                continue
            for vnet, networks in routes.items():
                # Where a route and the block overlap, the smaller of the two is what they share.
                shared = [
                    min(n, cidr, key=lambda x: x.num_addresses)
                    for n in networks
                    if n.version == cidr.version and n.overlaps(cidr)
                ]
                coverage[vnet] = coverage.get(vnet, 0) + sum(
                    n.num_addresses for n in ipaddress.collapse_addresses(shared)
                )
        ranked = sorted(coverage.values(), reverse=True)
        if ranked and ranked[0] > 0 and (len(ranked) == 1 or ranked[0] > ranked[1]):
            found[vpc] = max(coverage, key=coverage.__getitem__)
    return found


# Addresses recorded per transaction: each chunk locks its origins briefly, so log ingest is not held up for a
# whole pass, and the lookup stays well inside SQLite's limit on query parameters.
RECORD_CHUNK = 500

Key = tuple[str, str, int, str]  # (virtual network, address, port, protocol), as traffic keys an origin


def inventory_record(*, items: list[aws.InventoryItem], failed: set[tuple[str, str]], vnets: dict[str, str]) -> int:
    """Record what the inventory found as origins, keyed like traffic: (virtual network of the VPC, IP, port,
    protocol). The origins it no longer lists lose the inventory mark, except those of a (region, kind) that
    could not be read this time, which keep what an earlier pass found."""
    now = timezone.now()
    found: dict[Key, dict] = {}
    for item in items:
        address = item.address.lower()[:253]
        if not address or not 0 <= item.port <= 65535 or item.protocol not in Protocol.values:
            continue
        # Of two entries for one key the later describes it, and is matched where AWS listed it.
        key = (vnets.get(item.vpc_id, ""), address, item.port, item.protocol)
        found.pop(key, None)
        found[key] = {
            "kind": item.kind,
            "id": item.resource_id[:300],
            "region": item.region[:32],
            "name": item.name[:200],
            "tags": dict(list(item.tags.items())[:50]),
            "vpc_id": item.vpc_id[:64],
            "interface_id": item.interface_id[:64],
        }
    by_address: dict[str, list[Key]] = {}
    for key in found:
        by_address.setdefault(key[1], []).append(key)
    addresses = sorted(by_address)
    seen: set[int] = set()
    for at in range(0, len(addresses), RECORD_CHUNK):
        chunk = {key: found[key] for address in addresses[at : at + RECORD_CHUNK] for key in by_address[address]}
        seen |= again_on_deadlock(functools.partial(_record_chunk, chunk, now), what="an inventory chunk")
    # What this pass did not list was last listed before it began (a pass begun later may have listed it since).
    gone = Origin.objects.filter(seen_in_inventory=True).filter(
        Q(inventory_seen_at__lt=now) | Q(inventory_seen_at__isnull=True)
    )
    for region, kind in failed:
        gone = gone.exclude(inventory__region=region, inventory__kind=kind)
    again_on_deadlock(functools.partial(_unmark, gone), what="unmarking what the inventory no longer lists")
    return len(seen)


def _unmark(gone) -> None:
    with transaction.atomic():
        # Locked in id order, as log ingest locks origins.
        ids = list(gone.select_for_update().order_by("id").values_list("pk", flat=True))
        for at in range(0, len(ids), RECORD_CHUNK):
            Origin.objects.filter(pk__in=ids[at : at + RECORD_CHUNK]).update(seen_in_inventory=False)


def _record_chunk(found: dict[Key, dict], now) -> set[int]:
    """Record one chunk of addresses; the ids of the origins it marked."""
    with transaction.atomic():
        matched, missing = _matches(_locked(found), found)
        if missing:
            # New origins go in in key order, as log ingest inserts them; one of them that a log batch inserted
            # meanwhile is taken as it is, and the lookup is made again over the rows now there.
            Origin.objects.bulk_create(
                sorted(missing, key=lambda o: (o.vnet_id, o.address, o.port, o.protocol)), ignore_conflicts=True
            )
            matched, _ = _matches(_locked(found), found)
        marked: dict[int, Origin] = {}
        for key, details in found.items():
            for origin in matched[key]:
                origin.seen_in_inventory = True
                origin.inventory = details
                origin.inventory_seen_at = now
                origin.search_text = origin.compute_search_text()
                marked[origin.pk] = origin
        for origin in sorted(marked.values(), key=lambda o: o.pk):
            origin.save(update_fields=["vnet_id", "seen_in_inventory", "inventory", "inventory_seen_at", "search_text"])
    return set(marked)


def _locked(found: dict[Key, dict]) -> list[Origin]:
    return list(Origin.objects.select_for_update().filter(address__in={key[1] for key in found}).order_by("id"))


def _matches(rows: list[Origin], found: dict[Key, dict]) -> tuple[dict[Key, list[Origin]], list[Origin]]:
    """Which origins each key describes, and the unsaved origins to make for keys no row matches.

    Without a known network, the origin of that address in any network (traffic's, if it has been seen) is the
    one; with one, the origin in that network, or one an earlier pass could not yet place, which is placed now.
    """
    index: dict[tuple[str, int, str], list[Origin]] = {}
    for origin in rows:
        index.setdefault((origin.address, origin.port, origin.protocol), []).append(origin)
    matched: dict[Key, list[Origin]] = {}
    missing: list[Origin] = []
    for key in found:
        vnet, address, port, protocol = key
        same = index.setdefault((address, port, protocol), [])
        if vnet:
            matches = [o for o in same if o.vnet_id == vnet] or [o for o in same if o.vnet_id == ""]
            for origin in matches:
                origin.vnet_id = vnet
        else:
            matches = list(same)
        if not matches:
            origin = Origin(vnet_id=vnet, address=address, ip_key=ip_key(address), port=port, protocol=protocol)
            same.append(origin)
            missing.append(origin)
            matches = [origin]
        matched[key] = matches
    return matched, missing


def _renewal(run_id: int):
    def renew(until) -> bool:
        return bool(InventoryRun.objects.filter(pk=run_id, finished_at__isnull=True).update(lease_until=until))

    return renew


def inventory_discover(*, regions: list[str]) -> InventoryRun:
    """One inventory pass over the regions; each kind of resource AWS refuses or fails to list becomes a warning
    on the run, and every other kind is recorded."""
    run = InventoryRun.objects.create(
        regions=regions[:50], lease_until=timezone.now() + timedelta(seconds=lease_seconds())
    )
    try:
        with Renewal(_renewal(run.pk)):
            items: list[aws.InventoryItem] = []
            failures: list[aws.InventoryFailure] = []
            vpcs: dict[str, list[str]] = {}
            for region in regions:
                result = aws.inventory(region)
                items.extend(result.items)
                failures.extend(result.failures)
                vpcs.update(result.vpcs)
            for failure in failures:
                log.warning("AWS inventory: %s in %s failed: %s", failure.action, failure.region, failure.error)
            run.origins = inventory_record(
                items=items, failed={(f.region, f.kind) for f in failures}, vnets=vpc_virtual_networks(vpcs)
            )
            run.warnings = [
                {"region": f.region, "kind": f.kind, "action": f.action, "error": f.error}
                for f in failures[: InventoryRun.MAX_WARNINGS]
            ]
    except BaseException as exc:
        reason = f"Gatehouse could not finish this pass ({type(exc).__name__}); the worker's log says why."
        InventoryRun.objects.filter(pk=run.pk).update(error=reason, finished_at=timezone.now(), lease_until=None)
        raise
    # A pass the resume pass ended as stopped (its renewals stalled) that got to its end after all has finished.
    run.finished_at, run.lease_until, run.error = timezone.now(), None, ""
    run.save(update_fields=["origins", "warnings", "finished_at", "lease_until", "error"])
    return run
