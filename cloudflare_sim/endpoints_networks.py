"""Accounts, tunnels, connectors, remote configurations, private routes, virtual networks, zones and DNS."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from datetime import datetime
from typing import Any

from cloudflare_sim import world
from cloudflare_sim.app import ApiError, Reply, Request, bad_request, not_found, paginate, route
from cloudflare_sim.store import Doc
from cloudflare_sim.world import (
    connectors,
    iso,
    make_tunnel,
    new_tag,
    new_uuid,
    parse_time,
    public,
    remove_connectors,
)

HOSTNAME_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
SERVICE_SCHEMES = (
    "http://",
    "https://",
    "unix:",
    "unix+tls:",
    "tcp://",
    "ssh://",
    "rdp://",
    "smb://",
    "http_status:",
    "hello_world",
    "bastion",
    "socks-proxy",
)
TUNNEL_STATUSES = ("inactive", "degraded", "healthy", "down")


def valid_hostname(name: Any, *, wildcard: bool = False) -> bool:
    if not isinstance(name, str) or len(name) > 253:
        return False
    labels = name.lower().split(".")
    if wildcard and labels[0] == "*":
        labels = labels[1:]
    return len(labels) >= 2 and all(HOSTNAME_LABEL.match(label) for label in labels)


def _time_param(req: Request, name: str) -> float | None:
    value = req.q(name)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise bad_request(f"{name} must be an RFC 3339 timestamp") from None


def _deleted_filter(req: Request, items: list[Doc]) -> list[Doc]:
    """Since 2025-12-01 lists leave deleted objects out unless is_deleted=true, which shows only those."""
    only_deleted = req.q_bool("is_deleted") is True
    return [d for d in items if (d.get("deleted_at") is not None) == only_deleted]


def _existed_at(req: Request, items: list[Doc]) -> list[Doc]:
    at = _time_param(req, "existed_at")
    if at is None:
        return items
    return [
        d
        for d in items
        if parse_time(d["created_at"]) <= at
        and (d.get("deleted_at") is None or parse_time(d["deleted_at"]) > at)
    ]


# -- accounts and tokens ------------------------------------------------------------------------------------


@route("GET", "/accounts")
def account_list(req: Request) -> Reply:
    return paginate(req, [public(a) for a in req.store.list("account")], default_per_page=20, max_per_page=50)


@route("GET", "/accounts/{account_id}")
def account_get(req: Request, account_id: str) -> Reply:
    return Reply(public(req.store.get("account", account_id) or {}))


@route("GET", "/user/tokens/verify")
def token_verify(req: Request) -> Reply:
    return Reply({"id": "9a7806061c88ada191ed06f989cc3dac", "status": "active"})


@route("GET", "/accounts/{account_id}/tokens/verify")
def account_token_verify(req: Request, account_id: str) -> Reply:
    return token_verify(req)


# -- tunnels ------------------------------------------------------------------------------------------------


def get_tunnel(req: Request, tunnel_id: str, *, live: bool = False) -> Doc:
    tunnel = req.store.get("tunnel", tunnel_id, req.account_id)
    if tunnel is None or (live and tunnel["deleted_at"] is not None):
        raise not_found("Tunnel", 1003)
    return tunnel


def _check_secret(value: Any) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise bad_request("tunnel_secret must be base64", 1006, "/tunnel_secret") from None
    if len(raw) < 32:
        raise bad_request("tunnel_secret must be at least 32 bytes", 1006, "/tunnel_secret")
    return value


def _check_name_free(req: Request, name: Any, keep: str | None = None) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise bad_request("name is required and must be at most 255 characters", 1001, "/name")
    for other in req.store.list("tunnel", req.account_id):
        if other["name"] == name and other["deleted_at"] is None and other["id"] != keep:
            raise ApiError(409, 1013, "You already have a tunnel with this name")
    return name


def tunnel_token(tunnel: Doc) -> str:
    payload = {"a": tunnel["account_tag"], "t": tunnel["id"], "s": tunnel["_secret"]}
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


@route("GET", "/accounts/{account_id}/cfd_tunnel")
def tunnel_list(req: Request, account_id: str) -> Reply:
    tunnels = _existed_at(req, _deleted_filter(req, req.store.list("tunnel", account_id)))
    if (name := req.q("name")) is not None:
        tunnels = [t for t in tunnels if t["name"] == name]
    if (status := req.q("status")) is not None:
        if status not in TUNNEL_STATUSES:
            raise bad_request(f"status must be one of {', '.join(TUNNEL_STATUSES)}", 1001)
        tunnels = [t for t in tunnels if t["status"] == status]
    if (tunnel_id := req.q("uuid")) is not None:
        tunnels = [t for t in tunnels if t["id"] == tunnel_id]
    if (prefix := req.q("include_prefix")) is not None:
        tunnels = [t for t in tunnels if t["name"].startswith(prefix)]
    if (prefix := req.q("exclude_prefix")) is not None:
        tunnels = [t for t in tunnels if not t["name"].startswith(prefix)]
    if (at := _time_param(req, "was_active_at")) is not None:
        tunnels = [
            t
            for t in tunnels
            if t["conns_active_at"]
            and parse_time(t["conns_active_at"]) <= at
            and (t["conns_inactive_at"] is None or parse_time(t["conns_inactive_at"]) > at)
        ]
    if (at := _time_param(req, "was_inactive_at")) is not None:
        tunnels = [
            t
            for t in tunnels
            if t["conns_active_at"] is None
            or parse_time(t["conns_active_at"]) > at
            or (t["conns_inactive_at"] and parse_time(t["conns_inactive_at"]) <= at)
        ]
    return paginate(req, [public(t) for t in tunnels], default_per_page=20, max_per_page=1000)


@route("POST", "/accounts/{account_id}/cfd_tunnel")
def tunnel_create(req: Request, account_id: str) -> Reply:
    body = req.json()
    name = _check_name_free(req, body.get("name"))
    config_src = body.get("config_src", "local")
    if config_src not in ("local", "cloudflare"):
        raise bad_request("config_src must be local or cloudflare", 1001, "/config_src")
    secret = _check_secret(body["tunnel_secret"]) if "tunnel_secret" in body else None
    tunnel = make_tunnel(account_id, name, req.now, config_src=config_src, secret=secret)
    with req.store.write():
        req.store.put("tunnel", tunnel, account_id)
        world.tunnel_created(req.store, tunnel, req.now)
    credentials = {
        "AccountTag": account_id,
        "TunnelID": tunnel["id"],
        "TunnelName": name,
        "TunnelSecret": tunnel["_secret"],
    }
    return Reply({**public(tunnel), "credentials_file": credentials, "token": tunnel_token(tunnel)})


@route("GET", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}")
def tunnel_get(req: Request, account_id: str, tunnel_id: str) -> Reply:
    return Reply(public(get_tunnel(req, tunnel_id)))


@route("PATCH", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}")
def tunnel_edit(req: Request, account_id: str, tunnel_id: str) -> Reply:
    tunnel = get_tunnel(req, tunnel_id, live=True)
    body = req.json()
    if "name" in body:
        tunnel["name"] = _check_name_free(req, body["name"], keep=tunnel_id)
    if "tunnel_secret" in body:
        tunnel["_secret"] = _check_secret(body["tunnel_secret"])
    req.store.put("tunnel", tunnel, account_id)
    return Reply(public(tunnel))


@route("DELETE", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}")
def tunnel_delete(req: Request, account_id: str, tunnel_id: str) -> Reply:
    tunnel = get_tunnel(req, tunnel_id, live=True)
    if any(not c["is_pending_reconnect"] for k in connectors(req.store, tunnel_id) for c in k["conns"]):
        raise bad_request("Cannot delete a tunnel with active connections; stop its connectors first", 1022)
    with req.store.write():
        req.store.delete_children("connector", tunnel_id)
        tunnel["deleted_at"] = iso(req.now)
        req.store.put("tunnel", tunnel, account_id)
        # Cloudflare deletes the tunnel's private routes with it; a later DELETE of one answers 404.
        for route_doc in req.store.list("route", account_id):
            if route_doc["tunnel_id"] == tunnel_id and route_doc["deleted_at"] is None:
                route_doc["deleted_at"] = tunnel["deleted_at"]
                req.store.put("route", route_doc, account_id)
        world.tunnel_deleted(req.store, tunnel, req.now)
    return Reply(public(tunnel))


@route("GET", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/token")
def tunnel_token_get(req: Request, account_id: str, tunnel_id: str) -> Reply:
    return Reply(tunnel_token(get_tunnel(req, tunnel_id, live=True)))


def _public_connector(connector: Doc) -> Doc:
    return {**connector, "conns": [public(c) for c in connector["conns"]]}


@route("GET", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/connections")
def connection_list(req: Request, account_id: str, tunnel_id: str) -> Reply:
    get_tunnel(req, tunnel_id)
    return Reply([_public_connector(k) for k in connectors(req.store, tunnel_id)])


@route("DELETE", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/connections")
def connection_delete(req: Request, account_id: str, tunnel_id: str) -> Reply:
    tunnel = get_tunnel(req, tunnel_id, live=True)
    client_id = req.q("client_id")
    if client_id is not None and all(k["id"] != client_id for k in connectors(req.store, tunnel_id)):
        raise not_found("Connector", 1004)
    remove_connectors(req.store, tunnel, req.now, client_id)
    return Reply(None)


@route("GET", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/connectors/{connector_id}")
def connector_get(req: Request, account_id: str, tunnel_id: str, connector_id: str) -> Reply:
    get_tunnel(req, tunnel_id)
    for connector in connectors(req.store, tunnel_id):
        if connector["id"] == connector_id:
            return Reply(_public_connector(connector))
    raise not_found("Connector", 1004)


def _config_reply(tunnel: Doc, config: Doc | None) -> Doc:
    return {
        "account_id": tunnel["account_tag"],
        "tunnel_id": tunnel["id"],
        "version": config["version"] if config else 0,
        "config": config["config"] if config else None,
        "source": "cloudflare" if tunnel["remote_config"] else "local",
        "created_at": config["created_at"] if config else tunnel["created_at"],
    }


@route("GET", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations")
def configuration_get(req: Request, account_id: str, tunnel_id: str) -> Reply:
    tunnel = get_tunnel(req, tunnel_id)
    return Reply(_config_reply(tunnel, req.store.get("tunnel_config", tunnel_id, account_id)))


def _check_ingress(config: Any) -> None:
    """The whole configuration a PUT replaces: ingress rules checked as cloudflared would, other keys kept as sent."""
    if not isinstance(config, dict):
        raise bad_request("config must be an object", 1055, "/config")
    if not isinstance(config.get("originRequest", {}), dict):
        raise bad_request("config.originRequest must be an object", 1055, "/config/originRequest")
    ingress = config.get("ingress", [])
    if not isinstance(ingress, list):
        raise bad_request("config.ingress must be a list", 1055, "/config/ingress")
    for i, rule in enumerate(ingress):
        pointer = f"/config/ingress/{i}"
        if not isinstance(rule, dict) or not isinstance(rule.get("service"), str):
            raise bad_request("every ingress rule needs a service", 1055, pointer)
        if not isinstance(rule.get("originRequest", {}), dict):
            raise bad_request("originRequest must be an object", 1055, pointer + "/originRequest")
        if not isinstance(rule.get("path", ""), str):
            raise bad_request("path must be a string", 1055, pointer + "/path")
        if not rule["service"].startswith(SERVICE_SCHEMES):
            raise bad_request(f"unsupported service {rule['service']!r}", 1055, pointer + "/service")
        hostname = rule.get("hostname")
        catch_all = hostname in (None, "", "*") and not rule.get("path")
        if i == len(ingress) - 1:
            if not catch_all:
                raise bad_request(
                    "The last ingress rule must match all URLs (i.e. it should not have a hostname "
                    "or path filter)",
                    1055,
                    pointer,
                )
        elif catch_all:
            raise bad_request("Only the last ingress rule may match all URLs", 1055, pointer)
        elif hostname not in (None, "", "*") and not valid_hostname(hostname, wildcard=True):
            raise bad_request(f"invalid hostname {hostname!r}", 1055, pointer + "/hostname")


@route("PUT", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations")
def configuration_put(req: Request, account_id: str, tunnel_id: str) -> Reply:
    tunnel = get_tunnel(req, tunnel_id, live=True)
    config = req.json().get("config")
    _check_ingress(config)
    with req.store.write():
        previous = req.store.get("tunnel_config", tunnel_id, account_id)
        stored = {
            "id": tunnel_id,
            "config": config,
            "version": (previous["version"] if previous else 0) + 1,
            "created_at": iso(req.now),
        }
        req.store.put("tunnel_config", stored, account_id, parent=tunnel_id)
        tunnel["remote_config"], tunnel["config_src"] = True, "cloudflare"
        tunnel["_config_version"] = stored["version"]
        req.store.put("tunnel", tunnel, account_id)
        for connector in connectors(req.store, tunnel_id):
            connector["config_version"] = stored["version"]
            req.store.put("connector", connector, account_id, parent=tunnel_id)
    return Reply(_config_reply(tunnel, stored))


# -- virtual networks ---------------------------------------------------------------------------------------


def get_vnet(req: Request, vnet_id: str, *, live: bool = True) -> Doc:
    vnet = req.store.get("vnet", vnet_id, req.account_id)
    if vnet is None or (live and vnet["deleted_at"] is not None):
        raise not_found("Virtual network", 1021)
    return vnet


def default_vnet(req: Request) -> Doc | None:
    return next(
        (
            v
            for v in req.store.list("vnet", req.account_id)
            if v["is_default_network"] and v["deleted_at"] is None
        ),
        None,
    )


def _vnet_name_free(req: Request, name: Any, keep: str | None = None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise bad_request("name is required", 1001, "/name")
    if any(
        v["name"] == name and v["deleted_at"] is None and v["id"] != keep
        for v in req.store.list("vnet", req.account_id)
    ):
        raise ApiError(409, 1020, "A virtual network with this name already exists")
    return name


def _make_default(req: Request, vnet: Doc) -> None:
    for other in req.store.list("vnet", req.account_id):
        if other["is_default_network"] and other["id"] != vnet["id"]:
            other["is_default_network"] = False
            req.store.put("vnet", other, req.account_id)
    vnet["is_default_network"] = True


@route("GET", "/accounts/{account_id}/teamnet/virtual_networks")
def vnet_list(req: Request, account_id: str) -> Reply:
    vnets = _deleted_filter(req, req.store.list("vnet", account_id))
    if (vnet_id := req.q("id")) is not None:
        vnets = [v for v in vnets if v["id"] == vnet_id]
    if (name := req.q("name")) is not None:
        vnets = [v for v in vnets if v["name"] == name]
    if (is_default := req.q_bool("is_default_network")) is not None:
        vnets = [v for v in vnets if v["is_default_network"] == is_default]
    return Reply(vnets)


@route("POST", "/accounts/{account_id}/teamnet/virtual_networks")
def vnet_create(req: Request, account_id: str) -> Reply:
    body = req.json()
    vnet = {
        "id": new_uuid(),
        "name": _vnet_name_free(req, body.get("name")),
        "comment": body.get("comment") or "",
        "is_default_network": False,
        "created_at": iso(req.now),
        "deleted_at": None,
    }
    with req.store.write():
        if body.get("is_default_network") or body.get("is_default") or default_vnet(req) is None:
            _make_default(req, vnet)
        req.store.put("vnet", vnet, account_id)
    return Reply(vnet)


@route("GET", "/accounts/{account_id}/teamnet/virtual_networks/{vnet_id}")
def vnet_get(req: Request, account_id: str, vnet_id: str) -> Reply:
    return Reply(get_vnet(req, vnet_id, live=False))


@route("PATCH", "/accounts/{account_id}/teamnet/virtual_networks/{vnet_id}")
def vnet_edit(req: Request, account_id: str, vnet_id: str) -> Reply:
    vnet = get_vnet(req, vnet_id)
    body = req.json()
    with req.store.write():
        if "name" in body:
            vnet["name"] = _vnet_name_free(req, body["name"], keep=vnet_id)
        if "comment" in body:
            vnet["comment"] = body["comment"] or ""
        if body.get("is_default_network"):
            _make_default(req, vnet)
        req.store.put("vnet", vnet, account_id)
    return Reply(vnet)


@route("DELETE", "/accounts/{account_id}/teamnet/virtual_networks/{vnet_id}")
def vnet_delete(req: Request, account_id: str, vnet_id: str) -> Reply:
    vnet = get_vnet(req, vnet_id)
    if vnet["is_default_network"]:
        raise bad_request(
            "The default virtual network cannot be deleted; make another one the default first", 1023
        )
    if any(
        r["virtual_network_id"] == vnet_id and r["deleted_at"] is None
        for r in req.store.list("route", account_id)
    ):
        raise bad_request("The virtual network still has routes; delete them first", 1024)
    vnet["deleted_at"] = iso(req.now)
    req.store.put("vnet", vnet, account_id)
    return Reply(vnet)


# -- private network routes ---------------------------------------------------------------------------------


def _network(value: Any, pointer: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value)
    except (ValueError, TypeError):
        raise bad_request(f"{value!r} is not a valid CIDR network", 1016, pointer) from None


def _teamnet(req: Request, route_doc: Doc) -> Doc:
    tunnel = req.store.get("tunnel", route_doc["tunnel_id"], req.account_id) or {}
    vnet = req.store.get("vnet", route_doc["virtual_network_id"], req.account_id) or {}
    return {
        **route_doc,
        "tun_type": "cfd_tunnel",
        "tunnel_name": tunnel.get("name"),
        "virtual_network_name": vnet.get("name"),
    }


def get_route(req: Request, route_id: str, *, live: bool = False) -> Doc:
    found = req.store.get("route", route_id, req.account_id)
    if found is None or (live and found["deleted_at"] is not None):
        raise not_found("Route", 1017)
    return found


def _check_route(req: Request, doc: Doc) -> None:
    """The tunnel and virtual network must exist, and a network may be routed once per virtual network."""
    tunnel = req.store.get("tunnel", doc["tunnel_id"] or "", req.account_id)
    if tunnel is None or tunnel["deleted_at"] is not None:
        raise bad_request(f"Tunnel {doc['tunnel_id']} not found", 1003, "/tunnel_id")
    vnet = req.store.get("vnet", doc["virtual_network_id"] or "", req.account_id)
    if vnet is None or vnet["deleted_at"] is not None:
        raise bad_request(
            f"Virtual network {doc['virtual_network_id']} not found", 1021, "/virtual_network_id"
        )
    for other in req.store.list("route", req.account_id):
        if (
            other["network"] == doc["network"]
            and other["virtual_network_id"] == doc["virtual_network_id"]
            and other["deleted_at"] is None
            and other["id"] != doc["id"]
        ):
            raise ApiError(409, 1014, "A route for this network already exists in this virtual network")


@route("GET", "/accounts/{account_id}/teamnet/routes")
def route_list(req: Request, account_id: str) -> Reply:
    routes = _existed_at(req, _deleted_filter(req, req.store.list("route", account_id)))
    for key in ("tunnel_id", "virtual_network_id", "comment"):
        if (value := req.q(key)) is not None:
            routes = [r for r in routes if r[key] == value]
    if (route_id := req.q("route_id")) is not None:
        routes = [r for r in routes if r["id"] == route_id]
    if (subset := req.q("network_subset")) is not None:
        outer = _network(subset, "network_subset")
        routes = [r for r in routes if _within(ipaddress.ip_network(r["network"]), outer)]
    if (superset := req.q("network_superset")) is not None:
        inner = _network(superset, "network_superset")
        routes = [r for r in routes if _within(inner, ipaddress.ip_network(r["network"]))]
    tun_types = req.q_list("tun_types")
    if tun_types and "cfd_tunnel" not in tun_types:
        routes = []
    return paginate(req, [_teamnet(req, r) for r in routes], default_per_page=20, max_per_page=1000)


def _within(inner: Any, outer: Any) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)


@route("POST", "/accounts/{account_id}/teamnet/routes")
def route_create(req: Request, account_id: str) -> Reply:
    body = req.json()
    if "network" not in body:
        raise bad_request("network is required", 1016, "/network")
    vnet_id = body.get("virtual_network_id") or (default_vnet(req) or {}).get("id")
    doc = {
        "id": new_uuid(),
        "network": str(_network(body["network"], "/network")),
        "tunnel_id": body.get("tunnel_id"),
        "virtual_network_id": vnet_id,
        "comment": body.get("comment") or "",
        "created_at": iso(req.now),
        "deleted_at": None,
    }
    with req.store.write():
        _check_route(req, doc)
        req.store.put("route", doc, account_id)
    return Reply(doc)


@route("GET", "/accounts/{account_id}/teamnet/routes/ip/{ip}")
def route_by_ip(req: Request, account_id: str, ip: str) -> Reply:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise bad_request(f"{ip!r} is not a valid IP address", 1016) from None
    vnet_id = req.q("virtual_network_id") or (default_vnet(req) or {}).get("id")
    candidates = [
        r
        for r in req.store.list("route", account_id)
        if r["deleted_at"] is None
        and r["virtual_network_id"] == vnet_id
        and address in ipaddress.ip_network(r["network"])
    ]
    if not candidates:
        raise not_found("Route", 1017)
    best = max(candidates, key=lambda r: ipaddress.ip_network(r["network"]).prefixlen)
    return Reply(_teamnet(req, best))


@route("GET", "/accounts/{account_id}/teamnet/routes/{route_id}")
def route_get(req: Request, account_id: str, route_id: str) -> Reply:
    return Reply(get_route(req, route_id))


@route("PATCH", "/accounts/{account_id}/teamnet/routes/{route_id}")
def route_edit(req: Request, account_id: str, route_id: str) -> Reply:
    doc = get_route(req, route_id, live=True)
    body = req.json()
    if "network" in body:
        doc["network"] = str(_network(body["network"], "/network"))
    for key in ("tunnel_id", "virtual_network_id", "comment"):
        if key in body:
            doc[key] = body[key] if key != "comment" else (body[key] or "")
    with req.store.write():
        _check_route(req, doc)
        req.store.put("route", doc, account_id)
    return Reply(doc)


@route("DELETE", "/accounts/{account_id}/teamnet/routes/{route_id}")
def route_delete(req: Request, account_id: str, route_id: str) -> Reply:
    doc = get_route(req, route_id, live=True)
    doc["deleted_at"] = iso(req.now)
    req.store.put("route", doc, account_id)
    return Reply(doc)


# -- zones and DNS records ----------------------------------------------------------------------------------


def make_zone(account: Doc, name: str, now: float, rng: Any = None) -> Doc:
    stamp = iso(now)
    return {
        "id": new_tag(rng),
        "name": name,
        "status": "active",
        "paused": False,
        "type": "full",
        "development_mode": 0,
        "name_servers": ["ada.ns.cloudflare.com", "kirk.ns.cloudflare.com"],
        "original_name_servers": None,
        "original_registrar": None,
        "original_dnshost": None,
        "created_on": stamp,
        "modified_on": stamp,
        "activated_on": stamp,
        "meta": {"step": 2, "custom_certificate_quota": 0, "page_rule_quota": 3, "phishing_detected": False},
        "owner": {"id": None, "type": "organization", "name": account["name"]},
        "account": {"id": account["id"], "name": account["name"]},
        "tenant": {"id": None, "name": None},
        "tenant_unit": {"id": None},
        "permissions": ["#zone:read", "#dns_records:edit"],
        "plan": {
            "id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
            "name": "Enterprise Website",
            "price": 0,
            "currency": "USD",
            "frequency": "",
            "is_subscribed": True,
            "can_subscribe": False,
            "legacy_id": "enterprise",
            "legacy_discount": False,
            "externally_managed": False,
        },
    }


@route("GET", "/zones")
def zone_list(req: Request) -> Reply:
    zones = req.store.list("zone")
    if (name := req.q("name")) is not None:
        zones = [z for z in zones if z["name"] == name]
    if (status := req.q("status")) is not None:
        zones = [z for z in zones if z["status"] == status]
    if (account_id := req.q("account.id")) is not None:
        zones = [z for z in zones if z["account"]["id"] == account_id]
    if (account_name := req.q("account.name")) is not None:
        zones = [z for z in zones if z["account"]["name"] == account_name]
    return paginate(req, zones, default_per_page=20, max_per_page=50)


@route("GET", "/zones/{zone_id}")
def zone_get(req: Request, zone_id: str) -> Reply:
    return Reply(req.store.get("zone", zone_id))


PROXIABLE = ("A", "AAAA", "CNAME")
RECORD_TYPES = ("A", "AAAA", "CNAME", "TXT", "MX", "NS", "SRV", "CAA")


def _record_fields(req: Request, zone: Doc, body: Doc, current: Doc | None) -> Doc:
    record = dict(current or {})
    merged = {**(current or {}), **body}
    rtype = merged.get("type")
    if rtype not in RECORD_TYPES:
        raise bad_request(f"DNS record type {rtype!r} is not supported", 9004, "/type")
    name = str(merged.get("name") or "").lower().rstrip(".")
    if name in ("", "@"):
        name = zone["name"]
    elif name != zone["name"] and not name.endswith("." + zone["name"]):
        name = f"{name}.{zone['name']}"
    if not valid_hostname(name, wildcard=True):
        raise bad_request("DNS name is invalid.", 9005, "/name")
    content = merged.get("content")
    try:
        if rtype == "A":
            ipaddress.IPv4Address(content)
        elif rtype == "AAAA":
            ipaddress.IPv6Address(content)
    except (ValueError, TypeError):
        raise bad_request(f"Content for {rtype} record is invalid.", 9006, "/content") from None
    if rtype == "CNAME" and not valid_hostname(str(content or "").rstrip(".")):
        raise bad_request("Content for CNAME record is invalid.", 9007, "/content")
    ttl = merged.get("ttl", 1)
    if not isinstance(ttl, int | float) or not (ttl == 1 or 30 <= ttl <= 86400):
        raise bad_request("TTL must be between 30 and 86400 seconds, or 1 for Automatic.", 9021, "/ttl")
    proxied = bool(merged.get("proxied", False))
    if proxied and rtype not in PROXIABLE:
        raise bad_request(f"{rtype} records cannot be proxied.", 9004, "/proxied")
    stamp = iso(req.now)
    if "comment" in body and body["comment"] != record.get("comment"):
        record["comment_modified_on"] = stamp
    if "tags" in body and body["tags"] != record.get("tags"):
        record["tags_modified_on"] = stamp
    record.update(
        {
            "id": record.get("id") or new_tag(),
            "name": name,
            "type": rtype,
            "content": content,
            "proxied": proxied,
            "proxiable": rtype in PROXIABLE,
            "ttl": ttl,
            "comment": merged.get("comment"),
            "tags": merged.get("tags") or [],
            "settings": merged.get("settings") or ({"flatten_cname": False} if rtype == "CNAME" else {}),
            "meta": {},
            "created_on": record.get("created_on", stamp),
            "modified_on": stamp,
        }
    )
    for other in req.store.list("dns_record", parent=zone["id"]):
        if other["id"] == record["id"] or other["name"] != name:
            continue
        if "CNAME" in (rtype, other["type"]) and {rtype, other["type"]} & set(PROXIABLE):
            raise bad_request("An A, AAAA, or CNAME record with that host already exists.", 81053, "/name")
        if other["type"] == rtype and other["content"] == content:
            raise bad_request("An identical record already exists.", 81058, "/content")
    return record


def get_record(req: Request, zone_id: str, record_id: str) -> Doc:
    record = req.store.get("dns_record", record_id)
    if record is None or record.get("_zone") != zone_id:
        raise not_found("Record", 81044)
    return record


def _string_filter(req: Request, items: list[Doc], key: str) -> list[Doc]:
    tests = {
        "exact": lambda v, p: v == p,
        "contains": lambda v, p: p in v,
        "startswith": lambda v, p: v.startswith(p),
        "endswith": lambda v, p: v.endswith(p),
    }
    if (plain := req.q(key)) is not None:
        items = [d for d in items if (d.get(key) or "").lower() == plain.lower()]
    for op, test in tests.items():
        if (value := req.q(f"{key}.{op}")) is not None:
            items = [d for d in items if test((d.get(key) or "").lower(), value.lower())]
    return items


@route("GET", "/zones/{zone_id}/dns_records")
def record_list(req: Request, zone_id: str) -> Reply:
    records = req.store.list("dns_record", parent=zone_id)
    for key in ("name", "content", "comment"):
        records = _string_filter(req, records, key)
    if (rtype := req.q("type")) is not None:
        records = [r for r in records if r["type"] == rtype]
    if (proxied := req.q_bool("proxied")) is not None:
        records = [r for r in records if r["proxied"] == proxied]
    if (order := req.q("order")) in ("type", "name", "content", "ttl", "proxied"):
        records.sort(key=lambda r: (str(r[order]), r["name"]), reverse=req.q("direction") == "desc")
    return paginate(req, [public(r) for r in records], default_per_page=100, max_per_page=5000)


@route("POST", "/zones/{zone_id}/dns_records")
def record_create(req: Request, zone_id: str) -> Reply:
    zone = req.store.get("zone", zone_id) or {}
    with req.store.write():
        record = _record_fields(req, zone, req.json(), None)
        record["_zone"] = zone_id
        req.store.put("dns_record", record, zone["account"]["id"], parent=zone_id)
    return Reply(public(record))


@route("GET", "/zones/{zone_id}/dns_records/{record_id}")
def record_get(req: Request, zone_id: str, record_id: str) -> Reply:
    return Reply(public(get_record(req, zone_id, record_id)))


def _record_write(req: Request, zone_id: str, record_id: str, *, replace: bool) -> Reply:
    zone = req.store.get("zone", zone_id) or {}
    with req.store.write():
        current = get_record(req, zone_id, record_id)
        body = req.json()
        if replace:
            base = {k: current[k] for k in ("id", "created_on", "_zone", "comment", "tags")}
            current = {**base, "type": current["type"]} if "type" not in body else base
        record = _record_fields(req, zone, body, current)
        req.store.put("dns_record", record, zone["account"]["id"], parent=zone_id)
    return Reply(public(record))


@route("PATCH", "/zones/{zone_id}/dns_records/{record_id}")
def record_edit(req: Request, zone_id: str, record_id: str) -> Reply:
    return _record_write(req, zone_id, record_id, replace=False)


@route("PUT", "/zones/{zone_id}/dns_records/{record_id}")
def record_update(req: Request, zone_id: str, record_id: str) -> Reply:
    return _record_write(req, zone_id, record_id, replace=True)


@route("DELETE", "/zones/{zone_id}/dns_records/{record_id}")
def record_delete(req: Request, zone_id: str, record_id: str) -> Reply:
    get_record(req, zone_id, record_id)
    req.store.delete("dns_record", record_id)
    return Reply({"id": record_id})
