"""Lines as Logpush writes them, from pre-rendered pieces of the population, one object's window at a time."""

import bisect
import datetime as dt
import json
import math
import random
import statistics
import time
from collections.abc import Iterator

from cloudflare_sim.logpush.corrupt import MALFORMED_REASONS, break_line
from cloudflare_sim.logpush.plan import ObjectPlan, plan_objects
from cloudflare_sim.logpush.population import Device, Origin, Population, build_population, cumulative, seeded_rng
from cloudflare_sim.logpush.records import (
    DATASETS,
    MALFORMED,
    PUBLIC,
    TIMESTAMP_FORMATS,
    VALID,
    ZERO_TRUST_NETWORK_SESSIONS,
    Line,
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


_COLO_GEO = {
    "FRA": ("DE", "EU"), "AMS": ("NL", "EU"), "LHR": ("GB", "EU"), "CDG": ("FR", "EU"), "IAD": ("US", "NA"),
    "EWR": ("US", "NA"), "SJC": ("US", "NA"), "ORD": ("US", "NA"), "SIN": ("SG", "AS"), "NRT": ("JP", "AS"),
}  # fmt: skip


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

    def __init__(self, population: Population, dataset: str, timestamps: str) -> None:
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

    def _zt_origin(self, origin: Origin) -> str:
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
    def _zt_device(device: Device) -> str:
        return (
            f'"Email":"{device.email}","UserID":"{device.user_id}","DeviceID":"{device.device_id}",'
            f'"DeviceName":"{device.name}","RegistrationID":"{device.registration_id}",'
            f'"SourceInternalIP":"{device.internal_ip}","IngressColoName":"{device.colo}",'
        )

    def _gw_origin(self, origin: Origin) -> str:
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
    def _gw_device(device: Device) -> str:
        country, continent = _COLO_GEO[device.colo]
        return (
            f'"SourceIPCountryCode":"{country}","SourceIPContinentCode":"{continent}",'
            f'"Email":"{device.email}","UserID":"{device.user_id}","DeviceID":"{device.device_id}",'
            f'"DeviceName":"{device.name}","SourceInternalIP":"{device.internal_ip}",'
        )

    @staticmethod
    def _gw_policy(device: Device, blocked: bool) -> str:
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
        close_cum = cumulative([weight for _, weight in _CLOSE_REASONS])
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
                yield Line(MALFORMED, break_line(data, why, self.dataset), why)
            else:
                yield Line(kind, data)


def iter_objects(
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
    maker = _LineMaker(build_population(seed, origins, users, state), dataset, timestamps)
    rng = seeded_rng(seed, "records")
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
    for _, lines in iter_objects(
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
