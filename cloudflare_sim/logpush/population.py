"""The account behind the traffic: its virtual networks, tunnels, private origins and the people using WARP.

Origins and users both have Zipf-like popularity; vendors reach only the few systems they were granted. Ids come
from the seed, or from the simulator's state file when one is given, so that the logs name the tunnels, networks and
routes the simulated account really has.
"""

import bisect
import ipaddress
import math
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from cloudflare_sim import store

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


_COLOS = ("FRA", "AMS", "LHR", "CDG", "IAD", "EWR", "SJC", "ORD", "SIN", "NRT")


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


@dataclass(frozen=True)
class Origin:
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
class Device:
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
class Population:
    account_id: str
    vnet_ids: list[str]
    vnet_names: list[str]
    origins: list[Origin]
    devices: list[Device]
    device_cum: list[float]
    # Vendors reach only the handful of systems they were granted; employees reach everything.
    reach: list[tuple[list[int], list[float]]]


def seeded_rng(seed: int, stream: str) -> random.Random:
    """Independent streams, so that asking for more records never changes the population or the keys."""
    return random.Random(f"{seed}:{stream}")  # noqa: S311 -- simulated traffic, not secrets


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _zipf(count: int, exponent: float, rng: random.Random) -> list[float]:
    weights = [1.0 / (rank + 1) ** exponent for rank in range(count)]
    rng.shuffle(weights)
    return weights


def cumulative(weights: Sequence[float]) -> list[float]:
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


def _ids_from_state(path: str | None) -> _StateIds:
    """The account, tunnel, virtual-network and route ids in the simulator's state file, if there is one."""
    found = _StateIds()
    if not path:
        return found
    for kind, ident, account_id, details in store.read_documents(path, ("route", "tunnel", "vnet"), limit=5000):
        if not _is_uuid(ident) or details.get("deleted_at"):
            continue
        if kind == "route":
            network, tunnel_id, vnet_id = (details.get(name) for name in ("network", "tunnel_id", "virtual_network_id"))
            if isinstance(network, str) and isinstance(tunnel_id, str) and isinstance(vnet_id, str):
                found.routes.append((network, tunnel_id, vnet_id))
        elif kind == "tunnel":
            found.tunnels.append(ident)
        elif details.get("is_default_network"):
            # The default network takes the first slot, the one most traffic goes to.
            found.vnets.insert(0, ident)
        else:
            found.vnets.append(ident)
            if isinstance(details.get("name"), str) and details["name"]:
                found.vnet_names[ident] = details["name"]
        if found.account_id is None and isinstance(account_id, str) and account_id:
            found.account_id = account_id
    return found


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


def build_population(seed: int, origins: int, users: int, state: str | None) -> Population:
    rng = seeded_rng(seed, "population")
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

    service_cum = cumulative([service[3] for service in _SERVICES])
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
    population: list[Origin] = []
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
            Origin(
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

    devices: list[Device] = []
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
                Device(
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
    everything_cum = cumulative(origin_weights)
    reach: list[tuple[list[int], list[float]]] = []
    grants: dict[str, tuple[list[int], list[float]]] = {}
    for device in devices:
        if not device.vendor:
            reach.append((everything, everything_cum))
            continue
        if device.email not in grants:
            granted = rng.sample(everything, min(len(everything), rng.randint(2, 8)))
            grants[device.email] = (granted, cumulative(_zipf(len(granted), 1.0, rng)))
        reach.append(grants[device.email])

    return Population(
        account_id=account_id,
        vnet_ids=vnet_ids,
        vnet_names=vnet_names,
        origins=population,
        devices=devices,
        device_cum=cumulative(user_weights),
        reach=reach,
    )
