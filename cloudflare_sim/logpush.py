"""Network-session logs delivered to S3 the way Cloudflare Logpush delivers them.

Each object is gzipped NDJSON, one record per line, under Logpush's daily-folder layout::

    {prefix}/{YYYYMMDD}/{start}_{end}_{8 hex}.log.gz      start/end as YYYYMMDDTHHMMSSZ (UTC)

The date folder is the one Logpush substitutes for ``{DATE}`` in a destination path, and start/end bound the
batch. Timestamps are integers in Unix nanoseconds because that is Logpush's default ``timestamp_format``;
``timestamps="rfc3339"`` (or ``unix``) gives what a job configured that way sends.

The traffic is shaped like a real account's: a fixed population of private origins (RFC 1918 and RFC 4193
addresses in a few virtual networks, some of which overlap) and of users at the company's domains and at
vendor domains, both with Zipf-like popularity; more traffic in working hours; a few dead origins whose
sessions end in ``ORIGIN_UNREACHABLE``. Exact shares of the lines are what an ingester has to refuse:
sessions to public destinations, and malformed lines. Everything is a pure function of the seed and the
arguments, so a test can regenerate precisely what was written with :func:`generate_records`.

Memory stays flat whatever the volume: lines are produced lazily and each object is compressed into one
reusable temporary file before it is uploaded.
"""

import argparse
import bisect
import contextlib
import datetime as dt
import ipaddress
import json
import math
import os
import queue
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple
from urllib.parse import urlparse

ZERO_TRUST_NETWORK_SESSIONS = "zero_trust_network_sessions"
GATEWAY_NETWORK = "gateway_network"
DATASETS = (ZERO_TRUST_NETWORK_SESSIONS, GATEWAY_NETWORK)
TIMESTAMP_FORMATS = ("unixnano", "unix", "rfc3339")

VALID = "valid"
PUBLIC = "public"
MALFORMED = "malformed"

# Every field each dataset's lines carry, in the order they are written.
FIELDS: dict[str, tuple[str, ...]] = {
    ZERO_TRUST_NETWORK_SESSIONS: (
        "AccountID",
        "SessionID",
        "SessionStartTime",
        "SessionEndTime",
        "SourceIP",
        "SourcePort",
        "OriginIP",
        "OriginPort",
        "Protocol",
        "DetectedProtocol",
        "Offramp",
        "DestinationTunnelID",
        "VirtualNetworkID",
        "EgressColoName",
        "EgressIP",
        "EgressPort",
        "EgressRuleID",
        "EgressRuleName",
        "Email",
        "UserID",
        "DeviceID",
        "DeviceName",
        "RegistrationID",
        "SourceInternalIP",
        "IngressColoName",
        "BytesSent",
        "BytesReceived",
        "ConnectionCloseReason",
        "ConnectionReuse",
        "ClientTCPHandshakeDurationMs",
        "ClientTLSCipher",
        "ClientTLSHandshakeDurationMs",
        "ClientTLSVersion",
        "OriginTLSCertificateIssuer",
        "OriginTLSCertificateValidationResult",
        "OriginTLSCipher",
        "OriginTLSHandshakeDurationMs",
        "OriginTLSVersion",
        "RuleEvaluationDurationMs",
    ),
    GATEWAY_NETWORK: (
        "AccountID",
        "SessionID",
        "Datetime",
        "Action",
        "PolicyID",
        "PolicyName",
        "SourceIP",
        "SourcePort",
        "DestinationIP",
        "DestinationPort",
        "TransportProtocol",
        "DetectedProtocol",
        "SNI",
        "DestinationIPCountryCode",
        "DestinationIPContinentCode",
        "VirtualNetworkID",
        "VirtualNetworkName",
        "OverrideIP",
        "OverridePort",
        "ProxyEndpoint",
        "SourceIPCountryCode",
        "SourceIPContinentCode",
        "Email",
        "UserID",
        "DeviceID",
        "DeviceName",
        "SourceInternalIP",
        "ApplicationIDs",
        "ApplicationNames",
        "CategoryIDs",
        "CategoryNames",
    ),
}

# The fields that name the destination, per dataset: what malformed lines corrupt.
_DEST_IP = {ZERO_TRUST_NETWORK_SESSIONS: "OriginIP", GATEWAY_NETWORK: "DestinationIP"}
_DEST_PORT = {ZERO_TRUST_NETWORK_SESSIONS: "OriginPort", GATEWAY_NETWORK: "DestinationPort"}
_TIME = {ZERO_TRUST_NETWORK_SESSIONS: "SessionStartTime", GATEWAY_NETWORK: "Datetime"}

MALFORMED_REASONS = (
    "truncated",
    "port_not_a_number",
    "port_negative",
    "port_out_of_range",
    "ip_not_an_address",
    "ip_wrong_type",
    "missing_destination",
    "time_not_a_time",
    "absurd_bytes",
    "script_in_identity",
    "oversized_field",
    "not_utf8",
    "json_array",
    "json_null",
)

# Destinations on the internet that WARP users really reach: resolvers and big clouds.
_PUBLIC_DESTINATIONS = (
    ("8.8.8.8", 53, "UDP", "DNS"),
    ("8.8.8.8", 443, "TCP", "TLS"),
    ("1.1.1.1", 443, "TCP", "TLS"),
    ("1.1.1.1", 53, "UDP", "DNS"),
    ("2606:4700::1111", 443, "TCP", "TLS"),
    ("2001:4860:4860::8888", 853, "TCP", "TLS"),
    ("9.9.9.9", 853, "TCP", "TLS"),
    ("52.95.110.1", 443, "TCP", "TLS"),
    ("140.82.112.3", 22, "TCP", "SSH"),
)

# (port, protocol, detected protocol, weight, median bytes to the client, median bytes from the client)
_SERVICES = (
    (443, "TCP", "TLS", 30, 180_000, 6_000),
    (80, "TCP", "HTTP", 10, 60_000, 2_000),
    (5432, "TCP", "POSTGRESQL", 10, 400_000, 40_000),
    (6379, "TCP", "REDIS", 7, 50_000, 20_000),
    (22, "TCP", "SSH", 9, 30_000, 8_000),
    (3389, "TCP", "RDP", 5, 8_000_000, 600_000),
    (8080, "TCP", "HTTP", 6, 90_000, 3_000),
    (9200, "TCP", "HTTP", 3, 250_000, 12_000),
    (3306, "TCP", "MYSQL", 4, 300_000, 30_000),
    (1433, "TCP", "TDS", 2, 300_000, 30_000),
    (27017, "TCP", "MONGODB", 2, 200_000, 20_000),
    (8443, "TCP", "TLS", 3, 150_000, 5_000),
    (445, "TCP", "SMB", 2, 2_000_000, 80_000),
    (636, "TCP", "TLS", 1, 6_000, 2_000),
    (9092, "TCP", "KAFKA", 1, 500_000, 500_000),
    (53, "UDP", "DNS", 3, 300, 80),
    (10000, "UDP", "", 2, 1_500_000, 900_000),
    (0, "ICMP", "", 1, 600, 600),
)  # fmt: skip

# Why sessions to a reachable origin end, and how often.
_CLOSE_REASONS = (
    ("CLIENT_CLOSED", 540),
    ("ORIGIN_CLOSED", 260),
    ("CLIENT_IDLE_TIMEOUT", 100),
    ("ORIGIN_ERROR", 20),
    ("CLIENT_ERROR", 20),
    ("ORIGIN_UNREACHABLE", 15),
    ("CLIENT_TLS_ERROR", 10),
    ("UNKNOWN", 10),
    ("PROXY_CONN_REFUSED", 5),
)

_COLOS = ("FRA", "AMS", "LHR", "CDG", "IAD", "EWR", "SJC", "ORD", "SIN", "NRT")
_COLO_GEO = {
    "FRA": ("DE", "EU"), "AMS": ("NL", "EU"), "LHR": ("GB", "EU"), "CDG": ("FR", "EU"), "IAD": ("US", "NA"),
    "EWR": ("US", "NA"), "SJC": ("US", "NA"), "ORD": ("US", "NA"), "SIN": ("SG", "AS"), "NRT": ("JP", "AS"),
}  # fmt: skip

_EMPLOYEE_DOMAINS = ("example.com", "example.co.uk")
_VENDOR_DOMAINS = ("northwind-it.example", "contoso-support.example")
_FIRST = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj",
    "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yasmin", "zoe", "amir", "bea", "chen",
    "dmitri", "elena", "femi", "gita", "hugo", "ines", "jonas", "kenji", "lena", "marta", "noor", "oskar",
)  # fmt: skip
_LAST = (
    "smith", "jones", "garcia", "muller", "rossi", "dubois", "kowalski", "tanaka", "nguyen", "silva", "olsen",
    "novak", "kim", "patel", "fischer", "moreau", "bianchi", "larsen", "haddad", "costa", "weber", "santos",
)  # fmt: skip
_DEVICE_KINDS = ("macbook-pro", "macbook-air", "thinkpad", "xps", "surface", "linux", "iphone", "pixel")

# Virtual networks as companies really lay them out: two of them reuse the same 10/8 space, which is why
# an origin is only identified by its virtual network together with its address.
_VNETS = (
    ("default", ("10.0.0.0/8",), "fd10:0:0::/48"),
    ("prod-eu", ("10.0.0.0/8",), "fd20:1:2::/48"),
    ("staging", ("172.16.0.0/12",), "fd30:3:4::/48"),
    ("office-lan", ("192.168.0.0/16",), "fd40:5:6::/48"),
)

# Logpush's own cap on records per object (max_upload_records): a busier window becomes several objects.
MAX_OBJECT_RECORDS = 100_000


class Line(NamedTuple):
    """One line as written (without its newline); ``reason`` says how a malformed line is broken."""

    kind: str
    data: bytes
    reason: str = ""

    def record(self) -> dict[str, Any] | None:
        """The parsed record, or None for a malformed line."""
        if self.kind == MALFORMED:
            return None
        return json.loads(self.data)


@dataclass(frozen=True)
class ObjectPlan:
    start: dt.datetime
    end: dt.datetime
    records: int
    public: int
    malformed: int
    suffix: str

    def key(self, prefix: str) -> str:
        name = f"{_stamp(self.start)}_{_stamp(self.end)}_{self.suffix}.log.gz"
        folder = self.start.strftime("%Y%m%d")
        return f"{prefix}/{folder}/{name}" if prefix else f"{folder}/{name}"


@dataclass
class Summary:
    bucket: str
    prefix: str
    dataset: str
    start: str
    end: str
    objects: int = 0
    records: int = 0
    valid: int = 0
    public: int = 0
    malformed: int = 0
    bytes_uncompressed: int = 0
    bytes_compressed: int = 0
    seconds: float = 0.0
    keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Origin:
    ip: str
    port: int
    protocol: str
    detected: str
    vnet: int
    tunnel_id: str
    offramp: str
    egress_colo: str
    sent_mu: float
    received_mu: float
    dead: bool


@dataclass(frozen=True)
class _Device:
    email: str
    user_id: str
    device_id: str
    name: str
    registration_id: str
    internal_ip: str
    source_ip: str
    colo: str
    vendor: bool


@dataclass
class _Population:
    account_id: str
    vnet_ids: list[str]
    vnet_names: list[str]
    origins: list[_Origin]
    devices: list[_Device]
    device_cum: list[float]
    # Vendors reach only the handful of systems they were granted; employees reach everything.
    reach: list[tuple[list[int], list[float]]]


def _rng(seed: int, stream: str) -> random.Random:
    """Independent streams, so that asking for more records never changes the population or the keys."""
    return random.Random(f"{seed}:{stream}")  # noqa: S311 -- simulated traffic, not secrets


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _zipf(count: int, exponent: float, rng: random.Random) -> list[float]:
    weights = [1.0 / (rank + 1) ** exponent for rank in range(count)]
    rng.shuffle(weights)
    return weights


def _cumulative(weights: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out


@dataclass
class _StateIds:
    account_id: str | None = None
    tunnels: list[str] = field(default_factory=list)
    vnets: list[str] = field(default_factory=list)
    vnet_names: dict[str, str] = field(default_factory=dict)
    # (network, tunnel id, virtual network id) of each private-network route
    routes: list[tuple[str, str, str]] = field(default_factory=list)


_TUNNEL_KINDS = ("tunnel", "cfd_tunnel", "tunnels")
_VNET_KINDS = ("vnet", "virtual_network", "virtual_networks")


def _ids_from_state(path: str | None) -> _StateIds:
    """The account, tunnel and virtual-network ids in the simulator's state file, when it has recognisable ones.

    The state's schema belongs to the simulator and may change, so this only reads what it can recognise: a
    generic ``(kind, id, account_id, doc)`` table, or tables named after tunnels and virtual networks with an
    ``id`` column. Anything else yields nothing, and the ids come from the seed.
    """
    found = _StateIds()
    if not path or not Path(path).is_file():
        return found
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                columns = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
                if "id" not in columns:
                    continue
                # Table names come from sqlite_master of a file opened read-only, never from a user.
                if "kind" in columns:
                    _read_kind_table(conn, table, columns, found)
                    continue
                lowered = table.lower()
                if "route" in lowered or "connection" in lowered or "config" in lowered:
                    continue
                if "virtual" in lowered or "vnet" in lowered:
                    target = found.vnets
                elif "tunnel" in lowered:
                    target = found.tunnels
                else:
                    continue
                rows = conn.execute(f'SELECT "id" FROM "{table}" ORDER BY "id" LIMIT 1000')  # noqa: S608
                target.extend(str(row[0]) for row in rows if _is_uuid(row[0]))
    except sqlite3.Error:
        return _StateIds()
    return found


def _read_kind_table(conn: sqlite3.Connection, table: str, columns: set[str], found: _StateIds) -> None:
    account = '"account_id"' if "account_id" in columns else "NULL"
    doc = '"doc"' if "doc" in columns else "NULL"
    kinds = (*_TUNNEL_KINDS, *_VNET_KINDS, "route")
    marks = ", ".join("?" * len(kinds))
    rows = conn.execute(
        f'SELECT "kind", "id", {account}, {doc} FROM "{table}" WHERE "kind" IN ({marks}) '  # noqa: S608
        'ORDER BY "kind", "id" LIMIT 5000',
        kinds,
    )
    for kind, ident, account_id, document in rows:
        details = _json_object(document)
        if not _is_uuid(ident) or details.get("deleted_at"):
            continue
        if kind == "route":
            network, tunnel_id, vnet_id = (details.get(name) for name in ("network", "tunnel_id", "virtual_network_id"))
            if isinstance(network, str) and isinstance(tunnel_id, str) and isinstance(vnet_id, str):
                found.routes.append((network, tunnel_id, vnet_id))
        elif kind in _TUNNEL_KINDS:
            found.tunnels.append(str(ident))
        elif details.get("is_default_network"):
            # The default network takes the first slot, the one most traffic goes to.
            found.vnets.insert(0, str(ident))
        else:
            found.vnets.append(str(ident))
            if isinstance(details.get("name"), str) and details["name"]:
                found.vnet_names[str(ident)] = details["name"]
        if found.account_id is None and isinstance(account_id, str) and account_id:
            found.account_id = account_id


def _json_object(document: object) -> dict[str, Any]:
    try:
        parsed = json.loads(document) if isinstance(document, str) else None
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


_PRIVATE_SPACE = tuple(
    ipaddress.ip_network(cidr) for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8")
)


def _usable_routes(
    routes: list[tuple[str, str, str]], vnet_ids: list[str]
) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str, int]]:
    """The state's routes into RFC 1918 / RFC 4193 space in the networks in use, with their network's slot.

    Only private routes qualify: a session through one must never become a public destination by accident.
    """
    usable = []
    for cidr, tunnel_id, vnet_id in sorted(routes):
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        inside = any(network.version == space.version and network.subnet_of(space) for space in _PRIVATE_SPACE)
        if inside and vnet_id in vnet_ids and _is_uuid(tunnel_id):
            usable.append((network, tunnel_id, vnet_ids.index(vnet_id)))
    return usable


def _build_population(seed: int, origins: int, users: int, state: str | None) -> _Population:
    rng = _rng(seed, "population")
    account_id = f"{rng.getrandbits(128):032x}"
    from_state = _ids_from_state(state)
    account_id = from_state.account_id or account_id

    vnet_ids = [_uuid(rng) for _ in _VNETS]
    for index, vnet_id in enumerate(from_state.vnets[: len(vnet_ids)]):
        vnet_ids[index] = vnet_id
    # Origins only live in networks the account really has, when the state says which those are.
    in_use = min(len(_VNETS), len(from_state.vnets)) or len(_VNETS)
    vnet_names = [
        from_state.vnet_names.get(vnet_id, name) for vnet_id, (name, _, _) in zip(vnet_ids, _VNETS, strict=True)
    ]

    # One to three tunnels per virtual network; the last network in use also has a WARP Connector and a
    # Magic WAN site, the other ways off Cloudflare's edge into a private network.
    tunnels: list[list[tuple[str, str, str]]] = []
    for _ in _VNETS:
        tunnels.append([(_uuid(rng), "CFD_TUNNEL", rng.choice(_COLOS)) for _ in range(rng.randint(1, 3))])
    tunnels[in_use - 1].append((_uuid(rng), "WARP", rng.choice(_COLOS)))
    tunnels[in_use - 1].append((_uuid(rng), "MAGIC", rng.choice(_COLOS)))
    state_iter = iter(from_state.tunnels)
    tunnels = [[(next(state_iter, tid), off, colo) for tid, off, colo in group] for group in tunnels]

    service_cum = _cumulative([service[3] for service in _SERVICES])
    # Hosts cluster in a few subnets per network, as servers do.
    subnets: list[list[ipaddress.IPv4Network]] = []
    for _, cidrs, _ in _VNETS:
        picked = []
        for _ in range(rng.randint(6, 14)):
            space = ipaddress.IPv4Network(rng.choice(cidrs))
            offset = rng.randrange(space.num_addresses // 256) * 256
            picked.append(ipaddress.IPv4Network((int(space.network_address) + offset, 24)))
        subnets.append(picked)

    routes = _usable_routes(from_state.routes, vnet_ids[:in_use])
    population: list[_Origin] = []
    seen: set[tuple[int, str, int, str]] = set()
    attempts = 0
    while len(population) < origins:
        attempts += 1
        if attempts > 50 * origins + 1000:
            break  # the routed space is too small for this many distinct origins
        route = rng.choice(routes) if routes else None
        vnet = route[2] if route else rng.choices(range(in_use), weights=(5, 4, 2, 1)[:in_use])[0]
        port, protocol, detected, _, sent, received = _SERVICES[
            bisect.bisect(service_cum, rng.random() * service_cum[-1])
        ]
        if protocol == "TCP" and rng.random() < 0.04:
            # Kubernetes NodePorts and ad-hoc services that no catalogue would list.
            port, detected = rng.randint(30000, 32767), ""
        if route:
            # Hosts sit at the start of a routed network, as allocation from the bottom leaves them.
            network = route[0]
            hosts = min(network.num_addresses - 2, 1024)
            address = network.network_address + (1 + rng.randrange(hosts) if hosts > 0 else 0)
            ip = str(address)
        elif rng.random() < 0.1:
            ula = ipaddress.IPv6Network(_VNETS[vnet][2])
            subnet_id, host_id = rng.randrange(1, 64), rng.randrange(1, 4096)
            ip = str(ipaddress.IPv6Address(int(ula.network_address) + (subnet_id << 64) + host_id))
        else:
            subnet = rng.choice(subnets[vnet])
            ip = str(subnet.network_address + rng.randint(4, 250))
        if (vnet, ip, port, protocol) in seen:
            continue
        seen.add((vnet, ip, port, protocol))
        if route:
            tunnel_id, offramp, colo = route[1], "CFD_TUNNEL", rng.choice(_COLOS)
        else:
            # Most private traffic rides cloudflared; WARP Connector and Magic WAN carry a minority.
            paths = tunnels[vnet]
            path_weights = [4 if offramp == "CFD_TUNNEL" else 1 for _, offramp, _ in paths]
            tunnel_id, offramp, colo = rng.choices(paths, weights=path_weights)[0]
        population.append(
            _Origin(
                ip=ip,
                port=port,
                protocol=protocol,
                detected=detected,
                vnet=vnet,
                tunnel_id=tunnel_id,
                offramp=offramp,
                egress_colo=colo,
                sent_mu=math.log(sent),
                received_mu=math.log(received),
                dead=rng.random() < 0.03,
            )
        )
    origin_weights = _zipf(len(population), 1.1, rng)

    devices: list[_Device] = []
    user_weights: list[float] = []
    taken: set[str] = set()
    for person in range(users):
        vendor = rng.random() < 0.12
        domain = rng.choice(_VENDOR_DOMAINS if vendor else _EMPLOYEE_DOMAINS)
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        local = f"{first}.{last}"
        while f"{local}@{domain}" in taken:
            local = f"{first}.{last}{rng.randint(2, 99)}"
        email = f"{local}@{domain}"
        taken.add(email)
        user_id = _uuid(rng)
        colo = rng.choice(_COLOS)
        home_ip = (
            f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}"
            if rng.random() < 0.15
            else f"{rng.choice(('198.51.100', '203.0.113', '192.0.2'))}.{rng.randint(1, 254)}"
        )
        weight = 1.0 / (person + 1) ** 0.9
        for _ in range(1 if vendor else rng.choice((1, 1, 1, 2, 2, 3))):
            device_id = _uuid(rng)
            devices.append(
                _Device(
                    email=email,
                    user_id=user_id,
                    device_id=device_id,
                    name=f"{first}-{rng.choice(_DEVICE_KINDS)}-{device_id[:4]}",
                    registration_id=_uuid(rng),
                    internal_ip=f"100.{96 + rng.randrange(16)}.{rng.randrange(256)}.{rng.randint(1, 254)}",
                    source_ip=home_ip,
                    colo=colo,
                    vendor=vendor,
                )
            )
            user_weights.append(weight)
    # Person weights were assigned in creation order; shuffle so the busiest user is not always the first.
    order = list(range(len(devices)))
    rng.shuffle(order)
    devices = [devices[i] for i in order]
    user_weights = [user_weights[i] for i in order]

    everything = list(range(len(population)))
    everything_cum = _cumulative(origin_weights)
    reach: list[tuple[list[int], list[float]]] = []
    grants: dict[str, tuple[list[int], list[float]]] = {}
    for device in devices:
        if not device.vendor:
            reach.append((everything, everything_cum))
            continue
        if device.email not in grants:
            granted = rng.sample(everything, min(len(everything), rng.randint(2, 8)))
            grants[device.email] = (granted, _cumulative(_zipf(len(granted), 1.0, rng)))
        reach.append(grants[device.email])

    return _Population(
        account_id=account_id,
        vnet_ids=vnet_ids,
        vnet_names=vnet_names,
        origins=population,
        devices=devices,
        device_cum=_cumulative(user_weights),
        reach=reach,
    )


def _diurnal(moment: dt.datetime) -> float:
    """Relative traffic at a moment: a working-day peak across Europe and the Americas, quiet weekends."""
    hour = moment.hour + moment.minute / 60
    level = 0.25 + math.exp(-(((hour - 13.5) / 4.5) ** 2))
    return level * (0.4 if moment.weekday() >= 5 else 1.0)


def _apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to integer weights, exactly (largest remainder, ties to the earliest)."""
    scale = sum(weights)
    if scale == 0:
        return [0] * len(weights)
    shares = [total * weight // scale for weight in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % scale), i))
    for index in remainders[: total - sum(shares)]:
        shares[index] += 1
    return shares


def plan_objects(
    *,
    records: int,
    hours: float,
    seed: int,
    end: dt.datetime,
    objects_per_hour: int = 12,
    public_share: float = 0.01,
    malformed_share: float = 0.005,
) -> list[ObjectPlan]:
    """The objects a run writes: their time windows, record counts and key suffixes, in order."""
    _check_arguments(records, hours, objects_per_hour, public_share, malformed_share)
    rng = _rng(seed, "plan")
    keys_rng = _rng(seed, "keys")
    end = _utc(end)
    span = max(1, round(hours * 3600))
    start = end - dt.timedelta(seconds=span)
    windows = max(1, round(hours * objects_per_hour))
    bounds = [start + dt.timedelta(seconds=span * i // windows) for i in range(windows + 1)]

    weights = [
        int(1_000_000 * _diurnal(bounds[i] + (bounds[i + 1] - bounds[i]) / 2) * rng.uniform(0.85, 1.15))
        for i in range(windows)
    ]
    counts = _apportion(records, weights)
    # A window busier than Logpush's per-object cap is delivered as several objects covering slices of it.
    pieces: list[tuple[dt.datetime, dt.datetime, int]] = []
    for i, count in enumerate(counts):
        parts = max(1, -(-count // MAX_OBJECT_RECORDS))
        length = (bounds[i + 1] - bounds[i]).total_seconds()
        for part, share in enumerate(_apportion(count, [1] * parts)):
            lo = bounds[i] + dt.timedelta(seconds=int(length * part // parts))
            hi = bounds[i] + dt.timedelta(seconds=int(length * (part + 1) // parts))
            pieces.append((lo, hi, share))

    sizes = [count for _, _, count in pieces]
    public_total = round(records * public_share)
    malformed_total = min(records - public_total, round(records * malformed_share))
    public = _apportion(public_total, sizes)
    malformed = _apportion(malformed_total, [size - pub for size, pub in zip(sizes, public, strict=True)])
    return [
        ObjectPlan(lo, hi, count, pub, bad, f"{keys_rng.getrandbits(32):08x}")
        for (lo, hi, count), pub, bad in zip(pieces, public, malformed, strict=True)
    ]


def _check_arguments(
    records: int, hours: float, objects_per_hour: int, public_share: float, malformed_share: float
) -> None:
    if records < 0:
        raise ValueError("records must be zero or more")
    if not hours > 0:
        raise ValueError("hours must be more than zero")
    if objects_per_hour < 1:
        raise ValueError("objects_per_hour must be at least 1")
    if not (0 <= public_share <= 1 and 0 <= malformed_share <= 1 and public_share + malformed_share <= 1):
        raise ValueError("public_share and malformed_share must be between 0 and 1 and add up to at most 1")


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC, microsecond=0)
    return moment.astimezone(dt.UTC).replace(microsecond=0)


def _rfc3339(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 1_000_000_000))


_STAFF_POLICY = "5b4c1f3e-2a60-4d8f-9c1e-7a2b3c4d5e6f"
_VENDOR_POLICY = "8e7d6c5b-4a39-4281-b7f6-e5d4c3b2a190"
_BLOCK_POLICY = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
# Standard normal quantiles: one table lookup costs a tenth of random.gauss, and tails beyond 3.7 sigma
# would only produce absurd byte counts anyway.
_NORMAL = [statistics.NormalDist().inv_cdf((i + 0.5) / 8192) for i in range(8192)]
_ZT_TAIL = (
    '"ClientTLSCipher":"","ClientTLSHandshakeDurationMs":0,"ClientTLSVersion":"","OriginTLSCertificateIssuer":"",'
    '"OriginTLSCertificateValidationResult":"","OriginTLSCipher":"","OriginTLSHandshakeDurationMs":0,'
    '"OriginTLSVersion":"",'
)
_GW_TAIL = '"ApplicationIDs":[],"ApplicationNames":[],"CategoryIDs":[],"CategoryNames":[]}'


class _LineMaker:
    """Formats one dataset's lines from pre-rendered pieces, because json.dumps per record is too slow."""

    def __init__(self, population: _Population, dataset: str, timestamps: str) -> None:
        self.population = population
        self.dataset = dataset
        self.timestamps = timestamps
        self.account = json.dumps(population.account_id)
        if dataset == ZERO_TRUST_NETWORK_SESSIONS:
            self.origin_parts = [self._zt_origin(o) for o in population.origins]
            self.device_parts = [self._zt_device(d) for d in population.devices]
        else:
            self.origin_parts = [self._gw_origin(o) for o in population.origins]
            self.device_parts = [self._gw_device(d) for d in population.devices]
        # Gateway's dataset has no ICMP (its transports are tcp, quic and udp), so those origins never appear.
        zero_trust = dataset == ZERO_TRUST_NETWORK_SESSIONS
        usable = [zero_trust or origin.protocol != "ICMP" for origin in population.origins]
        fallback = next((i for i, ok in enumerate(usable) if ok), 0)
        self.substitute = [i if ok else fallback for i, ok in enumerate(usable)]

    def _zt_origin(self, origin: _Origin) -> str:
        return (
            f'"OriginIP":"{origin.ip}","OriginPort":{origin.port},"Protocol":"{origin.protocol}",'
            f'"DetectedProtocol":"{origin.detected}","Offramp":"{origin.offramp}",'
            f'"DestinationTunnelID":"{origin.tunnel_id}",'
            f'"VirtualNetworkID":"{self.population.vnet_ids[origin.vnet]}","EgressColoName":"{origin.egress_colo}",'
            '"EgressIP":"","EgressPort":0,"EgressRuleID":"","EgressRuleName":"",'
        )

    @staticmethod
    def _zt_public(destination: tuple[str, int, str, str], colo: str, rng: random.Random) -> str:
        ip, port, protocol, detected = destination
        # Traffic to the internet leaves through Cloudflare's WARP egress range, from the user's own colo.
        return (
            f'"OriginIP":"{ip}","OriginPort":{port},"Protocol":"{protocol}","DetectedProtocol":"{detected}",'
            f'"Offramp":"INTERNET","DestinationTunnelID":"","VirtualNetworkID":"","EgressColoName":"{colo}",'
            f'"EgressIP":"104.28.{rng.randrange(256)}.{rng.randint(1, 254)}",'
            f'"EgressPort":{rng.randint(1024, 65535)},"EgressRuleID":"","EgressRuleName":"",'
        )

    @staticmethod
    def _zt_device(device: _Device) -> str:
        return (
            f'"Email":"{device.email}","UserID":"{device.user_id}","DeviceID":"{device.device_id}",'
            f'"DeviceName":"{device.name}","RegistrationID":"{device.registration_id}",'
            f'"SourceInternalIP":"{device.internal_ip}","IngressColoName":"{device.colo}",'
        )

    def _gw_origin(self, origin: _Origin) -> str:
        transport = {"TCP": "tcp", "UDP": "udp"}.get(origin.protocol, "tcp")
        vnet = origin.vnet
        return (
            f'"DestinationIP":"{origin.ip}","DestinationPort":{origin.port},"TransportProtocol":"{transport}",'
            f'"DetectedProtocol":"{origin.detected}","SNI":"",'
            '"DestinationIPCountryCode":"","DestinationIPContinentCode":"",'
            f'"VirtualNetworkID":"{self.population.vnet_ids[vnet]}",'
            # The name may come from the simulator's state, so it is escaped rather than trusted.
            f'"VirtualNetworkName":{json.dumps(self.population.vnet_names[vnet])},'
            '"OverrideIP":"","OverridePort":0,"ProxyEndpoint":"",'
        )

    @staticmethod
    def _gw_public(destination: tuple[str, int, str, str]) -> str:
        ip, port, protocol, detected = destination
        transport = "quic" if protocol == "UDP" and port == 443 else protocol.lower()
        names = {"8.8.8.8": "dns.google", "1.1.1.1": "one.one.one.one"}
        sni = names.get(ip, "") if port in (443, 853) else ""
        return (
            f'"DestinationIP":"{ip}","DestinationPort":{port},"TransportProtocol":"{transport}",'
            f'"DetectedProtocol":"{detected}","SNI":"{sni}",'
            '"DestinationIPCountryCode":"US","DestinationIPContinentCode":"NA",'
            '"VirtualNetworkID":"","VirtualNetworkName":"",'
            '"OverrideIP":"","OverridePort":0,"ProxyEndpoint":"",'
        )

    @staticmethod
    def _gw_device(device: _Device) -> str:
        country, continent = _COLO_GEO[device.colo]
        return (
            f'"SourceIPCountryCode":"{country}","SourceIPContinentCode":"{continent}",'
            f'"Email":"{device.email}","UserID":"{device.user_id}","DeviceID":"{device.device_id}",'
            f'"DeviceName":"{device.name}","SourceInternalIP":"{device.internal_ip}",'
        )

    @staticmethod
    def _gw_policy(device: _Device, blocked: bool) -> str:
        if blocked:
            return f'"Action":"block","PolicyID":"{_BLOCK_POLICY}","PolicyName":"Block unmanaged devices",'
        if device.vendor:
            return f'"Action":"allow","PolicyID":"{_VENDOR_POLICY}","PolicyName":"Vendor access",'
        return f'"Action":"allow","PolicyID":"{_STAFF_POLICY}","PolicyName":"Staff access",'

    def lines(self, plan: ObjectPlan, rng: random.Random) -> Iterator[Line]:
        """The plan's lines, their session end times spread evenly through its window, in order."""
        count = plan.records
        if count == 0:
            return
        marks = rng.sample(range(count), plan.public + plan.malformed)
        special = dict.fromkeys(marks[: plan.public], PUBLIC) | dict.fromkeys(marks[plan.public :], MALFORMED)
        start_ns = int(plan.start.timestamp()) * 1_000_000_000
        step = (int(plan.end.timestamp()) * 1_000_000_000 - start_ns) / count

        pop = self.population
        devices, reach, substitute = pop.devices, pop.reach, self.substitute
        origins, origin_parts, device_parts = pop.origins, self.origin_parts, self.device_parts
        device_cum = pop.device_cum
        device_total, device_hi = device_cum[-1], len(device_cum) - 1
        account = self.account
        random_, getrandbits = rng.random, rng.getrandbits
        normal, normal_size = _NORMAL, len(_NORMAL)
        exp, bisect_ = math.exp, bisect.bisect
        close_names = [name for name, _ in _CLOSE_REASONS]
        close_cum = _cumulative([weight for _, weight in _CLOSE_REASONS])
        close_total, close_hi = close_cum[-1], len(close_cum) - 1
        timestamps = self.timestamps
        zero_trust = self.dataset == ZERO_TRUST_NETWORK_SESSIONS

        for index in range(count):
            end_ns = start_ns + int((index + random_()) * step)
            # hi= keeps a draw that rounds up to the total inside the table.
            d = bisect_(device_cum, random_() * device_total, 0, device_hi)
            device = devices[d]
            indexes, cum = reach[d]
            o = substitute[indexes[bisect_(cum, random_() * cum[-1], 0, len(cum) - 1)]]
            kind = special.get(index, VALID)

            duration = int(exp(9.0 + 1.8 * normal[int(random_() * normal_size)]) * 1_000_000)
            begin_ns = end_ns - duration
            if timestamps == "unixnano":
                first, last = str(begin_ns), str(end_ns)
            elif timestamps == "rfc3339":
                first, last = f'"{_rfc3339(begin_ns)}"', f'"{_rfc3339(end_ns)}"'
            else:
                first, last = str(begin_ns // 1_000_000_000), str(end_ns // 1_000_000_000)
            session = getrandbits(128)
            source_port = 1024 + int(random_() * 64511)

            if kind == PUBLIC:
                destination = _PUBLIC_DESTINATIONS[int(random_() * len(_PUBLIC_DESTINATIONS))]
                if zero_trust:
                    destination_part = self._zt_public(destination, device.colo, rng)
                else:
                    destination_part = self._gw_public(destination)
                dead = False
                sent_mu, received_mu = 10.0, 7.0
            else:
                origin = origins[o]
                destination_part = origin_parts[o]
                dead = origin.dead
                sent_mu, received_mu = origin.sent_mu, origin.received_mu

            if zero_trust:
                if dead:
                    reason, sent, received = "ORIGIN_UNREACHABLE", 0, int(random_() * 400)
                else:
                    reason = close_names[bisect_(close_cum, random_() * close_total, 0, close_hi)]
                    sent = int(exp(sent_mu + 1.3 * normal[int(random_() * normal_size)]))
                    received = int(exp(received_mu + 1.1 * normal[int(random_() * normal_size)]))
                reuse = "true" if random_() < 0.2 else "false"
                line = (
                    f'{{"AccountID":{account},"SessionID":"{session:032x}",'
                    f'"SessionStartTime":{first},"SessionEndTime":{last},'
                    f'"SourceIP":"{device.source_ip}","SourcePort":{source_port},'
                    f"{destination_part}{device_parts[d]}"
                    f'"BytesSent":{sent},"BytesReceived":{received},"ConnectionCloseReason":"{reason}",'
                    f'"ConnectionReuse":{reuse},"ClientTCPHandshakeDurationMs":{1 + int(random_() * 40)},'
                    f'{_ZT_TAIL}"RuleEvaluationDurationMs":{int(random_() * 4)}}}'
                )
            else:
                policy = self._gw_policy(device, random_() < 0.015)
                line = (
                    f'{{"AccountID":{account},"SessionID":"{session:032x}","Datetime":{first},{policy}'
                    f'"SourceIP":"{device.source_ip}","SourcePort":{source_port},'
                    f"{destination_part}{device_parts[d]}{_GW_TAIL}"
                )
            data = line.encode()
            if kind == MALFORMED:
                why = MALFORMED_REASONS[int(random_() * len(MALFORMED_REASONS))]
                yield Line(MALFORMED, _break(data, why, self.dataset), why)
            else:
                yield Line(kind, data)


def _break(data: bytes, reason: str, dataset: str) -> bytes:
    """A well-formed line damaged in one of the ways an ingester must survive."""
    if reason == "truncated":
        return data[: len(data) // 2]
    if reason == "not_utf8":
        return data.replace(b'"Email":"', b'"Email":"\xff\xfe\xc3(', 1)
    record = json.loads(data)
    port, ip = _DEST_PORT[dataset], _DEST_IP[dataset]
    if reason == "port_not_a_number":
        record[port] = "abc"
    elif reason == "port_negative":
        record[port] = -5
    elif reason == "port_out_of_range":
        record[port] = 70000
    elif reason == "ip_not_an_address":
        record[ip] = "10.0.0.300"
    elif reason == "ip_wrong_type":
        record[ip] = 167772161
    elif reason == "missing_destination":
        del record[ip]
        del record[port]
    elif reason == "time_not_a_time":
        record[_TIME[dataset]] = "yesterday afternoon"
    elif reason == "absurd_bytes":
        if dataset == ZERO_TRUST_NETWORK_SESSIONS:
            record["BytesSent"] = 10**20
        else:
            record[port] = 10**20
    elif reason == "script_in_identity":
        record["Email"] = "<script>alert(1)</script>"
        record["DeviceName"] = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    elif reason == "oversized_field":
        record["DeviceName"] = "A" * 100_000
    elif reason == "json_array":
        return json.dumps(list(record.values()), separators=(",", ":")).encode()
    elif reason == "json_null":
        return b"null"
    else:
        raise ValueError(f"unknown malformed reason {reason!r}")
    return json.dumps(record, separators=(",", ":")).encode()


def _iter_objects(
    *,
    records: int,
    hours: float,
    seed: int,
    end: dt.datetime,
    dataset: str,
    public_share: float,
    malformed_share: float,
    objects_per_hour: int,
    timestamps: str,
    origins: int,
    users: int,
    state: str | None,
) -> Iterator[tuple[ObjectPlan, Iterator[Line]]]:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}")
    if timestamps not in TIMESTAMP_FORMATS:
        raise ValueError(f"timestamps must be one of {', '.join(TIMESTAMP_FORMATS)}")
    if origins < 1 or users < 1:
        raise ValueError("origins and users must be at least 1")
    plans = plan_objects(
        records=records,
        hours=hours,
        seed=seed,
        end=end,
        objects_per_hour=objects_per_hour,
        public_share=public_share,
        malformed_share=malformed_share,
    )
    maker = _LineMaker(_build_population(seed, origins, users, state), dataset, timestamps)
    rng = _rng(seed, "records")
    # Everything above runs at the call, so bad arguments fail before anything is written.
    return ((plan, maker.lines(plan, rng)) for plan in plans)


def generate_records(
    *,
    records: int,
    hours: float,
    seed: int = 0,
    end: dt.datetime,
    dataset: str = ZERO_TRUST_NETWORK_SESSIONS,
    public_share: float = 0.01,
    malformed_share: float = 0.005,
    objects_per_hour: int = 12,
    timestamps: str = "unixnano",
    origins: int = 300,
    users: int = 200,
    state: str | None = None,
) -> Iterator[Line]:
    """Every line :func:`write_logpush` writes with the same arguments, in the same order."""
    for _, lines in _iter_objects(
        records=records,
        hours=hours,
        seed=seed,
        end=end,
        dataset=dataset,
        public_share=public_share,
        malformed_share=malformed_share,
        objects_per_hour=objects_per_hour,
        timestamps=timestamps,
        origins=origins,
        users=users,
        state=state,
    ):
        yield from lines


def ensure_bucket(s3_client: Any, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3_client.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    region = s3_client.meta.region_name
    options: dict[str, Any] = {"Bucket": bucket}
    if region and region != "us-east-1":
        options["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3_client.create_bucket(**options)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise


def write_logpush(
    s3_client: Any,
    bucket: str,
    prefix: str = "",
    *,
    records: int,
    hours: float,
    seed: int = 0,
    end: dt.datetime | None = None,
    dataset: str = ZERO_TRUST_NETWORK_SESSIONS,
    public_share: float = 0.01,
    malformed_share: float = 0.005,
    objects_per_hour: int = 12,
    timestamps: str = "unixnano",
    origins: int = 300,
    users: int = 200,
    state: str | None = None,
    create_bucket: bool = True,
    compresslevel: int = 1,
) -> Summary:
    """Write ``records`` lines over the ``hours`` before ``end`` into ``bucket`` and say what was written.

    ``end`` defaults to now, rounded down to a whole batch window, so repeated runs line up with each other.
    ``compresslevel`` defaults to 1 because producing benchmark volumes quickly matters more than object size;
    readers decompress any level the same way.
    """
    began = time.perf_counter()
    prefix = prefix.strip("/")
    if end is None:
        window = max(1, 3600 // max(1, objects_per_hour))
        now = int(time.time())
        end = dt.datetime.fromtimestamp(now - now % window, dt.UTC)
    end = _utc(end)
    span = max(1, round(hours * 3600))
    summary = Summary(
        bucket=bucket,
        prefix=prefix,
        dataset=dataset,
        start=(end - dt.timedelta(seconds=span)).isoformat().replace("+00:00", "Z"),
        end=end.isoformat().replace("+00:00", "Z"),
    )
    objects = _iter_objects(
        records=records,
        hours=hours,
        seed=seed,
        end=end,
        dataset=dataset,
        public_share=public_share,
        malformed_share=malformed_share,
        objects_per_hour=objects_per_hour,
        timestamps=timestamps,
        origins=origins,
        users=users,
        state=state,
    )
    if create_bucket:
        ensure_bucket(s3_client, bucket)
    with _Uploader(s3_client, bucket, compresslevel) as uploader:
        for plan, lines in objects:
            if plan.records == 0:
                continue
            chunk: list[bytes] = []
            for line in lines:
                chunk.append(line.data)
                if line.kind == VALID:
                    summary.valid += 1
                elif line.kind == PUBLIC:
                    summary.public += 1
                else:
                    summary.malformed += 1
                if len(chunk) == _LINES_PER_BLOCK:
                    summary.bytes_uncompressed += uploader.write(chunk)
                    chunk.clear()
            if chunk:
                summary.bytes_uncompressed += uploader.write(chunk)
            uploader.finish(plan.key(prefix))
            summary.records += plan.records
    summary.objects = len(uploader.uploaded)
    summary.keys = [key for key, _ in uploader.uploaded]
    summary.bytes_compressed = sum(size for _, size in uploader.uploaded)
    summary.seconds = round(time.perf_counter() - began, 3)
    return summary


_LINES_PER_BLOCK = 128


class _Uploader:
    """Compresses objects on one thread and uploads them on another.

    zlib and socket I/O release the GIL, so generating lines, compressing one object and uploading the
    previous one overlap. Bounded queues and two scratch files keep memory at a few blocks whatever the
    volume: an object is never held in memory whole.
    """

    def __init__(self, s3_client: Any, bucket: str, compresslevel: int) -> None:
        self.s3_client = s3_client
        self.bucket = bucket
        self.level = compresslevel
        self.uploaded: list[tuple[str, int]] = []
        self.error: BaseException | None = None
        self._blocks: queue.Queue[bytes | str | None] = queue.Queue(maxsize=4)
        self._ready: queue.Queue[tuple[str, IO[bytes], int] | None] = queue.Queue(maxsize=1)
        self._free: queue.Queue[IO[bytes]] = queue.Queue()
        self._scratch = contextlib.ExitStack()
        for _ in range(2):
            self._free.put(self._scratch.enter_context(tempfile.TemporaryFile()))  # noqa: SIM115 -- closed in __exit__
        self._threads = [
            threading.Thread(target=self._compress, name="logpush-gzip", daemon=True),
            threading.Thread(target=self._upload, name="logpush-upload", daemon=True),
        ]

    def __enter__(self) -> "_Uploader":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._blocks.put(None)
        for thread in self._threads:
            thread.join()
        self._scratch.close()
        if self.error is not None and exc_info[0] is None:
            raise self.error

    def write(self, lines: list[bytes]) -> int:
        if self.error is not None:
            raise self.error
        block = b"\n".join(lines) + b"\n"
        self._blocks.put(block)
        return len(block)

    def finish(self, key: str) -> None:
        self._blocks.put(key)

    def _compress(self) -> None:
        deflate: Any = None
        scratch: IO[bytes] | None = None
        while (item := self._blocks.get()) is not None:
            if self.error is not None:
                continue  # keep draining so that the producer never blocks on a dead consumer
            try:
                if isinstance(item, bytes):
                    if deflate is None:
                        scratch = self._free.get()
                        # zlib's own gzip framing (wbits 31) writes a zero mtime and no file name, so
                        # identical input gives identical objects; GzipFile would also leave a reference
                        # cycle, and its compressor's buffers, behind each object until the next collection.
                        deflate = zlib.compressobj(self.level, zlib.DEFLATED, 31)
                    scratch.write(deflate.compress(item))
                elif deflate is not None and scratch is not None:
                    scratch.write(deflate.flush())
                    self._ready.put((item, scratch, scratch.tell()))
                    deflate, scratch = None, None
            except BaseException as error:  # re-raised in the producer's thread
                self.error = error
        self._ready.put(None)

    def _upload(self) -> None:
        while (item := self._ready.get()) is not None:
            key, scratch, size = item
            try:
                if self.error is None:
                    scratch.seek(0)
                    self.s3_client.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=scratch,
                        ContentLength=size,
                        ContentType="application/gzip",
                    )
                    self.uploaded.append((key, size))
            except BaseException as error:  # re-raised in the producer's thread
                self.error = error
            finally:
                scratch.seek(0)
                scratch.truncate()
                self._free.put(scratch)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, prefix); Logpush's ``?region=`` style options are ignored."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URL: {url!r}")
    return parsed.netloc, parsed.path.strip("/")


def s3_client_from_environment() -> Any:
    """A boto3 S3 client configured the standard way (AWS_ENDPOINT_URL, AWS_REGION, credentials)."""
    import boto3
    from botocore.config import Config

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    # A local endpoint such as moto has no wildcard DNS for bucket subdomains.
    style = "path" if os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3") else "auto"
    return boto3.client("s3", region_name=region, config=Config(s3={"addressing_style": style}))


def _parse_end(text: str) -> dt.datetime:
    try:
        return _utc(dt.datetime.fromisoformat(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from error


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("a share is between 0 and 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cloudflare_sim logpush",
        description="Write network-session logs to S3 as Cloudflare Logpush does (gzipped NDJSON).",
    )
    parser.add_argument(
        "--to",
        default=os.environ.get("GATEHOUSE_LOGPUSH_URL"),
        help="destination, s3://bucket/prefix (default: $GATEHOUSE_LOGPUSH_URL)",
    )
    parser.add_argument("--records", type=int, required=True, help="lines to write in total")
    parser.add_argument("--hours", type=float, required=True, help="length of the window the sessions fill")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--end", type=_parse_end, help="end of the window, ISO 8601 (default: now, rounded down to a batch)"
    )
    parser.add_argument("--objects-per-hour", type=int, default=12, help="batches per hour (default 12)")
    parser.add_argument("--dataset", choices=DATASETS, default=ZERO_TRUST_NETWORK_SESSIONS)
    parser.add_argument("--public-share", type=_share, default=0.01, help="share of sessions to public IPs")
    parser.add_argument("--malformed-share", type=_share, default=0.005, help="share of broken lines")
    parser.add_argument("--timestamps", choices=TIMESTAMP_FORMATS, default="unixnano")
    parser.add_argument("--origins", type=int, default=300, help="private origins in the account")
    parser.add_argument("--users", type=int, default=200, help="people using WARP")
    parser.add_argument("--state", help="simulator state file to take tunnel and virtual network ids from")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:,.1f} MB"


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.to:
        parser.error("--to s3://bucket/prefix is required (or set GATEHOUSE_LOGPUSH_URL)")
    try:
        bucket, prefix = parse_s3_url(args.to)
        summary = write_logpush(
            s3_client_from_environment(),
            bucket,
            prefix,
            records=args.records,
            hours=args.hours,
            seed=args.seed,
            end=args.end,
            dataset=args.dataset,
            public_share=args.public_share,
            malformed_share=args.malformed_share,
            objects_per_hour=args.objects_per_hour,
            timestamps=args.timestamps,
            origins=args.origins,
            users=args.users,
            state=args.state,
        )
    except ValueError as error:
        parser.error(str(error))
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        where = f"s3://{bucket}/{prefix + '/' if prefix else ''}"
        print(
            f"logpush: {summary.objects} objects, {summary.records:,} {summary.dataset} records "
            f"({summary.valid:,} valid, {summary.public:,} to public IPs, {summary.malformed:,} malformed) "
            f"from {summary.start} to {summary.end}\n"
            f"         {_megabytes(summary.bytes_uncompressed)} of NDJSON, "
            f"{_megabytes(summary.bytes_compressed)} gzipped, in {summary.seconds:.1f} s, "
            f"under {where}YYYYMMDD/"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
