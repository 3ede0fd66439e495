"""The AWS inventory: the addresses AWS lists in each region recorded as origins, each VPC with its virtual network."""

import logging

from django.db import transaction
from django.utils import timezone

from discovery.models import InventoryRun, Origin, Protocol, ip_key
from integrations import aws

log = logging.getLogger(__name__)


def vpc_virtual_networks(vpcs: dict[str, list[str]]) -> dict[str, str]:
    """Each VPC's virtual network: the one whose private routes cover the most of the VPC's address blocks.
    A VPC no route reaches, or that two networks cover alike (overlapping address spaces), gets none."""
    import ipaddress

    from tunnels.models import Route

    routes: dict[str, list] = {}
    for network, vnet in Route.objects.filter(
        virtual_network__isnull=False, virtual_network__deleted_at__isnull=True
    ).values_list("network", "virtual_network__cf_id"):
        try:
            routes.setdefault(str(vnet), []).append(ipaddress.ip_network(network, strict=False))
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


def inventory_record(*, items: list[aws.InventoryItem], failed: set[tuple[str, str]], vnets: dict[str, str]) -> int:
    """Record what the inventory found as origins, keyed like traffic: (virtual network of the VPC, IP, port,
    protocol). The origins it no longer lists lose the inventory mark, except those of a (region, kind) that
    could not be read this time, which keep what an earlier pass found."""
    now = timezone.now()
    seen: set[int] = set()
    with transaction.atomic():
        for item in items:
            address = item.address.lower()[:253]
            if not address or not 0 <= item.port <= 65535 or item.protocol not in Protocol.values:
                continue
            vnet = vnets.get(item.vpc_id, "")
            details = {
                "kind": item.kind,
                "id": item.resource_id[:300],
                "region": item.region[:32],
                "name": item.name[:200],
                "tags": dict(list(item.tags.items())[:50]),
                "vpc_id": item.vpc_id[:64],
                "interface_id": item.interface_id[:64],
            }
            key = {"address": address, "port": item.port, "protocol": item.protocol}
            rows = Origin.objects.select_for_update()
            # Without a known network, the origin of that address in any network (traffic's, if it has been seen)
            # is the one; with one, the origin in that network, or one an earlier pass could not yet place.
            matches = list(rows.filter(vnet_id=vnet, **key)) if vnet else list(rows.filter(**key))
            if vnet and not matches:
                matches = list(rows.filter(vnet_id="", **key))
                for origin in matches:
                    origin.vnet_id = vnet
            if not matches:
                matches = [Origin.objects.create(vnet_id=vnet, ip_key=ip_key(address), **key)]
            for origin in matches:
                origin.seen_in_inventory = True
                origin.inventory = details
                origin.inventory_seen_at = now
                origin.search_text = origin.compute_search_text()
                origin.save(
                    update_fields=["vnet_id", "seen_in_inventory", "inventory", "inventory_seen_at", "search_text"]
                )
                seen.add(origin.pk)
        gone = Origin.objects.filter(seen_in_inventory=True).exclude(pk__in=seen)
        for region, kind in failed:
            gone = gone.exclude(inventory__region=region, inventory__kind=kind)
        gone.update(seen_in_inventory=False)
    return len(seen)


def inventory_discover(*, regions: list[str]) -> InventoryRun:
    """One inventory pass over the regions; each kind of resource AWS refuses or fails to list becomes a warning
    on the run, and every other kind is recorded."""
    run = InventoryRun.objects.create(regions=regions[:50])
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
    run.finished_at = timezone.now()
    run.save(update_fields=["origins", "warnings", "finished_at"])
    return run
