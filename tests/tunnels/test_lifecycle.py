"""Deleting a tunnel, cleaning up its stale connections, rotating its token, and virtual networks: each a change
carried out at the simulator, audited, for operators only."""

import base64
import json
import time

from django.urls import reverse

from cloudflare_sim import world
from cloudflare_sim.endpoints_networks import tunnel_token
from dashboard.models import AuditEntry
from integrations import cloudflare as cf
from tunnels.changes import MANAGED_COMMENT
from tunnels.models import DnsRecord, Route, Tunnel, TunnelChange, VirtualNetwork, Zone


def _doc(sim, tunnel):
    return sim.store.get("tunnel", str(tunnel.cf_id), sim.account_id)


def _live_routes(sim, tunnel):
    routes = sim.store.list("route", sim.account_id)
    return [r for r in routes if r["tunnel_id"] == str(tunnel.cf_id) and not r["deleted_at"]]


def _records_to(sim, tunnel):
    return {r["name"]: r for r in sim.store.list("dns_record") if r["content"] == f"{tunnel.cf_id}.cfargotunnel.com"}


def _stopped(sim, tunnel):
    """Its cloudflared stopped: every connection waits to reconnect, none is active."""
    world.tunnel_down(sim.store, _doc(sim, tunnel), time.time())


def test_delete_removes_routes_our_dns_records_and_the_tunnel_and_lists_records_it_did_not_create(
    operator_client, synced, run
):
    tunnel = Tunnel.objects.filter(route_count__gt=0, status=Tunnel.Status.HEALTHY).order_by("name").first()
    zone = Zone.objects.get(name="example.com")
    target = f"{tunnel.cf_id}.cfargotunnel.com"
    ours = cf.dns_cname_create(zone_id=zone.cf_id, name="ours-del.example.com", target=target, comment=MANAGED_COMMENT)
    cf.dns_cname_create(zone_id=zone.cf_id, name="theirs-del.example.com", target=target, comment="added by hand")
    networks = sorted(r["network"] for r in _live_routes(synced, tunnel))
    assert networks
    _stopped(synced, tunnel)

    page = operator_client.get(reverse("tunnels:tunnel_delete_confirm", args=[tunnel.cf_id])).content.decode()
    assert networks[0] in page and "managed by Gatehouse" in page
    wrong = operator_client.post(reverse("tunnels:tunnel_delete", args=[tunnel.cf_id]), {"confirm": "nope"})
    assert wrong.status_code == 400 and f"Type {tunnel.name} exactly" in wrong.content.decode()
    assert not TunnelChange.objects.exists()

    response = run(operator_client, reverse("tunnels:tunnel_delete", args=[tunnel.cf_id]), {"confirm": tunnel.name})
    change = TunnelChange.objects.get()
    assert change.status == TunnelChange.Status.SUCCEEDED, change.reason
    assert _doc(synced, tunnel)["deleted_at"] is not None
    assert _live_routes(synced, tunnel) == []
    assert synced.store.list("connector", parent=str(tunnel.cf_id)) == []
    assert set(_records_to(synced, tunnel)) == {"theirs-del.example.com"}
    tunnel.refresh_from_db()
    assert tunnel.deleted_at is not None and not Route.objects.filter(tunnel_cf_id=tunnel.cf_id).exists()
    assert not DnsRecord.objects.filter(cf_id=ours.id).exists()
    assert change.result["routes_removed"] == networks and change.result["dns_left"] == ["theirs-del.example.com"]
    shown = operator_client.get(response["Location"]).content.decode()
    assert "Gatehouse did not create them" in shown and "theirs-del.example.com" in shown
    entry = AuditEntry.objects.get(action="tunnel.deleted")
    assert entry.target_id == str(tunnel.cf_id) and entry.details["dns_removed"] == ["ours-del.example.com"]


def test_delete_is_refused_while_the_tunnel_serves_and_nothing_is_removed(operator_client, synced, run):
    tunnel = Tunnel.objects.filter(route_count__gt=0, status=Tunnel.Status.HEALTHY).order_by("name").first()
    routes = _live_routes(synced, tunnel)
    page = operator_client.get(reverse("tunnels:tunnel_delete_confirm", args=[tunnel.cf_id])).content.decode()
    assert "Cloudflare refuses to delete a tunnel with active connections" in page
    run(operator_client, reverse("tunnels:tunnel_delete", args=[tunnel.cf_id]), {"confirm": tunnel.name})
    change = TunnelChange.objects.get()
    assert change.status == TunnelChange.Status.FAILED
    assert "active connection" in change.reason and "Stop cloudflared there first" in change.reason
    assert _doc(synced, tunnel)["deleted_at"] is None and _live_routes(synced, tunnel) == routes
    tunnel.refresh_from_db()
    assert tunnel.deleted_at is None
    assert AuditEntry.objects.filter(action="tunnel.change_failed", target_id=str(tunnel.cf_id)).exists()


def test_clean_up_removes_only_connectors_without_an_open_connection(operator_client, synced, run):
    tunnel = Tunnel.objects.get(name="prod-eu-west-1-core")
    connectors = synced.store.list("connector", parent=str(tunnel.cf_id))
    assert len(connectors) == 3
    stale = connectors[0]["id"]
    world.connector_down(synced.store, _doc(synced, tunnel), time.time(), stale)
    response = run(operator_client, reverse("tunnels:connections_cleanup", args=[tunnel.cf_id]), {})
    change = TunnelChange.objects.get()
    assert change.status == TunnelChange.Status.SUCCEEDED and change.result["connectors_removed"] == [stale]
    remaining = {k["id"] for k in synced.store.list("connector", parent=str(tunnel.cf_id))}
    assert len(remaining) == 2 and stale not in remaining
    assert "Stale connectors removed: 1" in operator_client.get(response["Location"]).content.decode()
    assert AuditEntry.objects.get(action="tunnel.connections_cleaned").details["connectors_removed"] == [stale]


def test_rotating_the_token_changes_the_secret_and_shows_the_new_token_once(operator_client, admin_client, synced, run):
    tunnel = Tunnel.objects.filter(remote_config=True).order_by("name").first()
    old = tunnel_token(_doc(synced, tunnel))
    page = operator_client.get(reverse("tunnels:token_rotate_confirm", args=[tunnel.cf_id])).content.decode()
    assert "shows you the new token once" in page
    response = run(operator_client, reverse("tunnels:token_rotate", args=[tunnel.cf_id]), {})
    change = TunnelChange.objects.get()
    assert change.status == TunnelChange.Status.SUCCEEDED
    new = tunnel_token(_doc(synced, tunnel))
    assert new != old and len(base64.b64decode(json.loads(base64.b64decode(new))["s"])) == 32
    assert "--token" not in admin_client.get(response["Location"]).content.decode()
    assert new not in operator_client.get(response["Location"]).content.decode()
    show = reverse("tunnels:change_token", args=[change.public_id])
    first = operator_client.post(show).content.decode()
    assert f"cloudflared tunnel run --token {new}" in first and "restart every cloudflared" in first
    assert new not in operator_client.post(show).content.decode()
    entry = AuditEntry.objects.get(action="tunnel.token_rotated")
    assert entry.target_id == str(tunnel.cf_id) and new not in json.dumps(entry.details)


def test_a_created_tunnels_change_and_audit_entry_carry_its_id(operator_client, synced, run):
    run(operator_client, reverse("tunnels:tunnel_create"), {"name": "id-kept"})
    change = TunnelChange.objects.get()
    created = Tunnel.objects.get(name="id-kept")
    assert change.tunnel_id == created.pk and change.result["tunnel"] == str(created.cf_id)
    entry = AuditEntry.objects.get(action="tunnel.created")
    assert entry.target_id == str(created.cf_id) and entry.details["tunnel"] == str(created.cf_id)


def _sim_vnets(sim):
    return {v["name"]: v for v in sim.store.list("vnet", sim.account_id) if v["deleted_at"] is None}


def test_create_rename_and_delete_a_virtual_network(operator_client, synced, run):
    response = run(operator_client, reverse("tunnels:vnet_create"), {"name": "partner-net", "comment": "partners"})
    shown = operator_client.get(response["Location"]).content.decode()
    assert "Create virtual network" in shown and "partner-net" in shown and "Succeeded" in shown
    created = _sim_vnets(synced)["partner-net"]
    vnet = VirtualNetwork.objects.get(cf_id=created["id"])
    assert created["comment"] == "partners" and vnet.name == "partner-net"
    run(operator_client, reverse("tunnels:vnet_rename", args=[vnet.cf_id]), {"name": "vendor-net"})
    assert "vendor-net" in _sim_vnets(synced) and "partner-net" not in _sim_vnets(synced)
    vnet.refresh_from_db()
    assert vnet.name == "vendor-net"
    page = operator_client.get(reverse("tunnels:vnet_delete_confirm", args=[vnet.cf_id])).content.decode()
    assert "It has no private routes" in page
    run(operator_client, reverse("tunnels:vnet_delete", args=[vnet.cf_id]), {})
    assert "vendor-net" not in _sim_vnets(synced)
    vnet.refresh_from_db()
    assert vnet.deleted_at is not None
    actions = list(AuditEntry.objects.filter(target_type="virtual_network").values_list("action", "target_id"))
    assert sorted(actions) == sorted(
        [("vnet.created", str(vnet.cf_id)), ("vnet.renamed", str(vnet.cf_id)), ("vnet.deleted", str(vnet.cf_id))]
    )
    assert "vendor-net" not in operator_client.get(reverse("tunnels:vnet_list")).content.decode()


def test_a_name_in_use_is_refused_here_or_by_cloudflare(operator_client, synced, run):
    vnet = VirtualNetwork.objects.get(name="staging-vpc")
    known = operator_client.post(reverse("tunnels:vnet_rename", args=[vnet.cf_id]), {"name": "prod-vpc"})
    assert known.status_code == 400 and "already exists" in known.content.decode()
    assert not TunnelChange.objects.exists()
    # Someone made one at Cloudflare since the last sync: Cloudflare refuses, and the change says why.
    cf.virtual_network_create(name="made-elsewhere", comment="")
    run(operator_client, reverse("tunnels:vnet_rename", args=[vnet.cf_id]), {"name": "made-elsewhere"})
    change = TunnelChange.objects.get()
    assert change.status == TunnelChange.Status.FAILED and "already exists" in change.reason
    assert "staging-vpc" in _sim_vnets(synced)


def test_a_virtual_network_with_routes_or_the_default_one_is_not_deleted(operator_client, synced):
    routed = VirtualNetwork.objects.get(name="prod-vpc")
    assert routed.routes.exists()
    page = operator_client.get(reverse("tunnels:vnet_delete_confirm", args=[routed.cf_id])).content.decode()
    assert "Cloudflare refuses to delete it until they are removed" in page
    response = operator_client.post(reverse("tunnels:vnet_delete", args=[routed.cf_id]))
    assert response.status_code == 400 and "remove them first" in response.content.decode()
    default = VirtualNetwork.objects.get(is_default=True)
    response = operator_client.post(reverse("tunnels:vnet_delete", args=[default.cf_id]))
    assert response.status_code == 400 and "default virtual network cannot be deleted" in response.content.decode()
    assert not TunnelChange.objects.exists()
    assert {"prod-vpc", "default"} <= set(_sim_vnets(synced))


def test_viewers_cannot_use_the_lifecycle(viewer_client, synced):
    tunnel = Tunnel.objects.order_by("name").first()
    vnet = VirtualNetwork.objects.exclude(is_default=True).first()
    for url, data in (
        (reverse("tunnels:tunnel_delete", args=[tunnel.cf_id]), {"confirm": tunnel.name}),
        (reverse("tunnels:connections_cleanup", args=[tunnel.cf_id]), {}),
        (reverse("tunnels:token_rotate", args=[tunnel.cf_id]), {}),
        (reverse("tunnels:vnet_create"), {"name": "x-net"}),
        (reverse("tunnels:vnet_rename", args=[vnet.cf_id]), {"name": "x-net"}),
        (reverse("tunnels:vnet_delete", args=[vnet.cf_id]), {}),
    ):
        assert viewer_client.post(url, data).status_code == 403
    page = viewer_client.get(reverse("tunnels:tunnel_detail", args=[tunnel.cf_id])).content.decode()
    assert "Delete the tunnel" not in page and "Rotate the token" not in page
    assert not TunnelChange.objects.exists()


def test_creating_a_virtual_network_never_adopts_an_older_one_of_the_same_name(operator_client, synced, run):
    made = cf.virtual_network_create(name="older-net", comment="someone else's")
    doc = synced.store.get("vnet", str(made.id), synced.account_id)
    doc["created_at"] = "2026-01-01T00:00:00.000000Z"
    synced.store.put("vnet", doc, synced.account_id)
    run(operator_client, reverse("tunnels:vnet_create"), {"name": "older-net"})
    change = TunnelChange.objects.get()
    assert change.status == TunnelChange.Status.FAILED and "already exists at Cloudflare" in change.reason
    assert not VirtualNetwork.objects.filter(cf_id=made.id).exists()
    assert _sim_vnets(synced)["older-net"]["comment"] == "someone else's"
