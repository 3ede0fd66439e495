"""Believable accounts to run against: a demo company, or a fleet of any size for benchmarks.

Seeding replaces whatever world the state file held. Identifiers and names depend only on the seed.
"""

from __future__ import annotations

import random
from typing import Any

from cloudflare_sim import world
from cloudflare_sim.endpoints_networks import make_zone
from cloudflare_sim.store import Doc, Store
from cloudflare_sim.world import iso, make_connector, make_tunnel, new_tag, new_uuid

VERSIONS_CURRENT = ["2026.10.0", "2026.10.0", "2026.9.0"]
VERSIONS_OUTDATED = ["2025.11.1", "2025.8.0"]
REGIONS = [
    "eu-west-1",
    "eu-central-1",
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "ap-southeast-1",
    "ap-northeast-1",
]


class Seeder:
    def __init__(self, store: Store, now: float, seed: int, account_name: str):
        self.store, self.now, self.rng = store, now, random.Random(seed)  # noqa: S311 - simulated data
        store.wipe()
        self.account = {
            "id": new_tag(self.rng),
            "name": account_name,
            "type": "enterprise",
            "created_on": iso(now - 400 * 86400),
            "settings": {"enforce_twofactor": True},
        }
        store.put("account", self.account, self.account["id"])
        self.account_id = self.account["id"]
        self.vnets: list[Doc] = []
        self.zones: list[Doc] = []
        self.tunnels: list[Doc] = []
        self.pending: dict[str, list[tuple[Doc, str, str | None]]] = {}

    def add(self, kind: str, doc: Doc, parent: str | None = None) -> Doc:
        self.pending.setdefault(kind, []).append((doc, self.account_id, parent))
        return doc

    def flush(self) -> None:
        with self.store.write():
            for kind, rows in self.pending.items():
                self.store.put_many(kind, rows)
        self.pending.clear()

    def vnet(self, name: str, comment: str, default: bool = False) -> Doc:
        doc = {
            "id": new_uuid(self.rng),
            "name": name,
            "comment": comment,
            "is_default_network": default,
            "created_at": iso(self.now - 300 * 86400),
            "deleted_at": None,
        }
        self.vnets.append(doc)
        return self.add("vnet", doc)

    def zone(self, name: str) -> Doc:
        doc = make_zone(self.account, name, self.now - 380 * 86400, self.rng)
        self.zones.append(doc)
        return self.add("zone", doc)

    def tunnel(
        self, name: str, state: str, replicas: int, *, outdated: bool = False, config_src: str = "cloudflare"
    ) -> Doc:
        """A tunnel in the given state: inactive, healthy, degraded or down."""
        created = self.now - self.rng.randint(20, 300) * 86400
        tunnel = make_tunnel(self.account_id, name, created, self.rng, config_src=config_src)
        connectors = []
        if state != "inactive":
            started = self.now - self.rng.randint(1, 20) * 86400
            for i in range(replicas):
                version = self.rng.choice(VERSIONS_OUTDATED if outdated and i == 0 else VERSIONS_CURRENT)
                arch = self.rng.choice(["linux_amd64", "linux_amd64", "linux_arm64"])
                connectors.append(make_connector(tunnel, started, self.rng, version=version, arch=arch))
            dropped_at = self.now - self.rng.randint(20, 200)
            if state == "degraded":
                for conn in connectors[0]["conns"][:2]:
                    conn["is_pending_reconnect"], conn["_dropped_at"] = True, dropped_at
            elif state == "down":
                for connector in connectors:
                    for conn in connector["conns"]:
                        conn["is_pending_reconnect"], conn["_dropped_at"] = True, dropped_at
            tunnel["conns_active_at"] = iso(started)
            if state == "down":
                tunnel["conns_inactive_at"] = iso(dropped_at)
        tunnel["status"] = world.tunnel_status(tunnel, connectors)
        for connector in connectors:
            self.add("connector", connector, parent=tunnel["id"])
        self.tunnels.append(tunnel)
        return self.add("tunnel", tunnel)

    def route(self, network: str, tunnel: Doc, vnet: Doc, comment: str) -> Doc:
        return self.add(
            "route",
            {
                "id": new_uuid(self.rng),
                "network": network,
                "tunnel_id": tunnel["id"],
                "virtual_network_id": vnet["id"],
                "comment": comment,
                "created_at": tunnel["created_at"],
                "deleted_at": None,
            },
        )

    def summary(self, **extra: Any) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "account_name": self.account["name"],
            "zones": [{"id": z["id"], "name": z["name"]} for z in self.zones],
            "virtual_networks": [
                {"id": v["id"], "name": v["name"], "is_default_network": v["is_default_network"]}
                for v in self.vnets
            ],
            "tunnels": len(self.tunnels),
            **extra,
        }


def _cname(zone: Doc, host: str, tunnel: Doc, now: float, rng: random.Random) -> Doc:
    stamp = iso(now)
    return {
        "id": new_tag(rng),
        "name": host,
        "type": "CNAME",
        "content": f"{tunnel['id']}.cfargotunnel.com",
        "proxied": True,
        "proxiable": True,
        "ttl": 1,
        "comment": "managed by Gatehouse",
        "tags": [],
        "settings": {"flatten_cname": False},
        "meta": {},
        "created_on": stamp,
        "modified_on": stamp,
        "_zone": zone["id"],
    }


def _policy(rng: random.Random, name: str, include: list[Doc], now: float, session: str = "8h") -> Doc:
    return {
        "id": new_uuid(rng),
        "name": name,
        "decision": "allow",
        "include": include,
        "exclude": [],
        "require": [],
        "session_duration": session,
        "approval_required": False,
        "approval_groups": [],
        "purpose_justification_required": False,
        "isolation_required": False,
        "created_at": iso(now),
        "updated_at": iso(now),
    }


def seed_demo(store: Store, now: float, seed: int = 0) -> dict[str, Any]:
    s = Seeder(store, now, seed, "Northwind Logistics")
    rng = s.rng
    default = s.vnet("default", "Corporate network (default)", default=True)
    prod_vpc = s.vnet("prod-vpc", "Production VPCs")
    staging_vpc = s.vnet("staging-vpc", "Staging VPCs")
    main_zone, io_zone = s.zone("example.com"), s.zone("example.io")

    roles = ["core", "data", "edge", "ops"]
    plan = [
        (env, region, role)
        for region in REGIONS
        for env, role in [
            ("prod", roles[REGIONS.index(region) % 4]),
            ("prod", roles[(REGIONS.index(region) + 1) % 4]),
            ("staging", "core"),
        ]
    ][:22]
    plan += [
        ("dev", "eu-west-1", "sandbox"),
        ("corp", "us-east-1", "office"),
        ("corp", "eu-central-1", "office"),
    ]
    states = {3: "degraded", 8: "degraded", 13: "down", 23: "inactive", 17: "inactive"}
    for i, (env, region, role) in enumerate(plan):
        replicas = 3 if env == "prod" else 2
        s.tunnel(f"{env}-{region}-{role}", states.get(i, "healthy"), replicas, outdated=i % 4 == 1)

    hosts = [
        "grafana",
        "jenkins",
        "kibana",
        "status",
        "wiki",
        "git",
        "registry",
        "vault",
        "admin",
        "api",
        "metrics",
        "alerts",
        "ci",
        "docs",
        "tracing",
    ]
    n_public = 0
    for i, tunnel in enumerate(s.tunnels[:15]):
        zone = main_zone if i % 3 else io_zone
        region = tunnel["name"].split("-", 1)[1].rsplit("-", 1)[0]
        ingress = []
        for j, host in enumerate([hosts[i], hosts[(i + 5) % len(hosts)]][: 2 if i % 4 else 1]):
            fqdn = f"{host}-{region}.{zone['name']}" if j else f"{host}.{zone['name']}"
            ingress.append(
                {
                    "hostname": fqdn,
                    "service": f"http://{host}.internal:{8000 + j * 80}",
                    "originRequest": {"connectTimeout": 30},
                }
            )
            s.add("dns_record", _cname(zone, fqdn, tunnel, now, rng), parent=zone["id"])
            n_public += 1
        ingress.append({"hostname": "*", "service": "http_status:404"})
        s.add(
            "tunnel_config",
            {
                "id": tunnel["id"],
                "config": {"ingress": ingress},
                "version": 1 + i % 3,
                "created_at": iso(now - 86400),
            },
            parent=tunnel["id"],
        )
        tunnel["_config_version"] = 1 + i % 3
        for connector, _account, parent in s.pending.get("connector", []):
            if parent == tunnel["id"]:
                connector["config_version"] = tunnel["_config_version"]

    n_routes = 0
    for i, tunnel in enumerate(s.tunnels):
        env = tunnel["name"].split("-")[0]
        vnet = prod_vpc if env == "prod" else staging_vpc if env == "staging" else default
        for j in range(2 if env == "prod" else 1):
            s.route(f"10.{10 + i}.{j * 16}.0/20", tunnel, vnet, f"{tunnel['name']} subnet {j + 1}")
            n_routes += 1
        if env == "corp":
            s.route(f"192.168.{i}.0/24", tunnel, default, "office LAN")
            n_routes += 1

    employees = [
        f"{first}.{last}@example.com"
        for first, last in [
            ("ana", "silva"),
            ("ben", "okafor"),
            ("chen", "wei"),
            ("dana", "kim"),
            ("eli", "cohen"),
            ("fatima", "zahra"),
            ("george", "miller"),
            ("hana", "sato"),
            ("ivan", "petrov"),
            ("julia", "rossi"),
            ("kofi", "mensah"),
            ("lena", "fischer"),
        ]
    ]
    vendors = {
        "Acme Analytics": ("acme-analytics.com", ["priya", "tom", "sara"]),
        "Globex DBA Services": ("globex.io", ["mike", "yuki"]),
        "Initech Support": ("initech.net", ["peter", "samir", "joanna", "bill"]),
    }
    for email in employees + [f"{u}@{d}" for d, users in vendors.values() for u in users]:
        world.user_for_email(store, s.account_id, email, now - 200 * 86400, rng)

    sre = {
        "id": new_uuid(rng),
        "name": "SRE on-call",
        "include": [{"email": {"email": e}} for e in employees[:4]],
        "exclude": [],
        "require": [],
        "created_at": iso(now),
        "updated_at": iso(now),
    }
    s.add("access_group", sre)
    employees_policy = _policy(rng, "Employees", [{"email_domain": {"domain": "example.com"}}], now, "24h")
    sre_policy = _policy(rng, "SRE on-call", [{"group": {"id": sre["id"]}}], now, "12h")
    vendor_policies = {
        name: _policy(rng, f"Vendor: {name}", [{"email_domain": {"domain": domain}}], now)
        for name, (domain, _users) in vendors.items()
    }
    for policy in [employees_policy, sre_policy, *vendor_policies.values()]:
        s.add("access_policy", policy)

    private = prod_vpc["id"]
    apps = [
        (
            "S3 web console",
            [
                {
                    "type": "private",
                    "hostname": "s3.internal.example.com",
                    "port_range": "443",
                    "l4_protocol": "tcp",
                    "vnet_id": private,
                }
            ],
            ["Acme Analytics"],
        ),
        (
            "PostgreSQL orders",
            [
                {
                    "type": "private",
                    "cidr": "10.10.4.12/32",
                    "port_range": "5432",
                    "l4_protocol": "tcp",
                    "vnet_id": private,
                }
            ],
            ["Globex DBA Services"],
        ),
        (
            "Redis cache",
            [
                {
                    "type": "private",
                    "cidr": "10.11.8.20/32",
                    "port_range": "6379",
                    "l4_protocol": "tcp",
                    "vnet_id": private,
                }
            ],
            ["Globex DBA Services"],
        ),
        (
            "Internal API",
            [{"type": "public", "uri": "api.example.com"}],
            ["Initech Support", "Acme Analytics"],
        ),
        ("Grafana", [{"type": "public", "uri": "grafana.example.com"}], []),
        ("Jenkins", [{"type": "public", "uri": "jenkins.example.io"}], []),
        ("Kibana", [{"type": "public", "uri": "kibana.example.com"}], ["Initech Support"]),
        ("Vault", [{"type": "public", "uri": "vault.example.com"}], []),
        ("Admin console", [{"type": "public", "uri": "admin.example.com/console"}], []),
        (
            "MySQL legacy billing",
            [
                {
                    "type": "private",
                    "cidr": "10.12.0.40/32",
                    "port_range": "3306",
                    "l4_protocol": "tcp",
                    "vnet_id": private,
                }
            ],
            [],
        ),
        ("Support desk", [{"type": "public", "uri": "support.example.io"}], ["Initech Support"]),
    ]
    n_apps = 0
    for name, destinations, vendor_names in apps:
        refs = [{"id": employees_policy["id"], "precedence": 1}]
        refs += [{"id": vendor_policies[v]["id"], "precedence": 2 + k} for k, v in enumerate(vendor_names)]
        first = destinations[0]
        s.add(
            "access_app",
            {
                "id": new_uuid(rng),
                "aud": f"{rng.getrandbits(256):064x}",
                "type": "self_hosted",
                "name": name,
                "domain": first.get("uri") or first.get("hostname") or first["cidr"],
                "destinations": destinations,
                "session_duration": "8h" if vendor_names else "24h",
                "app_launcher_visible": True,
                "created_at": iso(now - 90 * 86400),
                "updated_at": iso(now - 90 * 86400),
                "_account_id": s.account_id,
                "_policy_refs": refs,
                "_inline_policies": [],
            },
        )
        n_apps += 1
    ssh_policy = {
        **_policy(rng, "SRE SSH", [{"group": {"id": sre["id"]}}], now, "8h"),
        "connection_rules": {"ssh": {"usernames": ["ubuntu", "ec2-user"], "allow_email_alias": True}},
        "precedence": 1,
    }
    s.add(
        "access_app",
        {
            "id": new_uuid(rng),
            "aud": f"{rng.getrandbits(256):064x}",
            "type": "infrastructure",
            "name": "SSH bastions",
            "target_criteria": [
                {
                    "port": 22,
                    "protocol": "SSH",
                    "target_attributes": {"hostname": ["bastion-eu", "bastion-us"]},
                }
            ],
            "created_at": iso(now - 60 * 86400),
            "updated_at": iso(now - 60 * 86400),
            "_account_id": s.account_id,
            "_policy_refs": [],
            "_inline_policies": [ssh_policy],
        },
    )
    n_apps += 1

    for vendor, (domain, _users) in vendors.items():
        s.add(
            "service_token",
            {
                "id": new_uuid(rng),
                "client_id": f"{rng.getrandbits(128):032x}.access",
                "name": f"{vendor} sync job",
                "duration": "8760h",
                "enabled": True,
                "expires_at": iso(now + 200 * 86400),
                "created_at": iso(now - 165 * 86400),
                "updated_at": iso(now - 165 * 86400),
                "last_seen_at": None,
                "_secret_digest": domain,
            },
        )
    s.flush()
    world.sync_sessions(store, s.account_id, now, rng, login_chance=0.6)
    return s.summary(
        connectors=len(store.list("connector", s.account_id)),
        routes=n_routes,
        public_hostnames=n_public,
        applications=n_apps,
        users=len(store.list("access_user", s.account_id)),
    )


def seed_scale(store: Store, now: float, tunnels: int, seed: int = 0) -> dict[str, Any]:
    """A large fleet: mostly healthy tunnels with two connectors, a few inactive, degraded and down."""
    s = Seeder(store, now, seed, "Scale Test Corp")
    vnet = s.vnet("default", "Default network", default=True)
    s.zone("example.com")
    for i in range(tunnels):
        region = REGIONS[i % len(REGIONS)]
        roll = s.rng.random()
        state = (
            "inactive" if roll < 0.03 else "down" if roll < 0.05 else "degraded" if roll < 0.10 else "healthy"
        )
        tunnel = s.tunnel(f"fleet-{region}-{i:05d}", state, 2, outdated=i % 5 == 0)
        s.route(f"10.{(i >> 8) & 255}.{i & 255}.0/24", tunnel, vnet, "")
    s.flush()
    return s.summary(connectors=len(store.list("connector", s.account_id)), routes=tunnels)
