"""Reading Logpush network-session lines: validate each one and add it up per origin, for one S3 object.

Lines come from Cloudflare, but through a bucket anyone with write access could fill, so every field is
checked for type, range and size before it counts; refusals are counted by kind and never stop the object.
Both datasets are read: ``zero_trust_network_sessions`` (OriginIP, OriginPort, Protocol, ...) and
``gateway_network`` (DestinationIP, DestinationPort, TransportProtocol, SNI, Datetime).

Memory is bounded by the object, not the bucket: one dict per origin the object mentions, with per-user
counts capped at MAX_USERS_PER_ORIGIN (beyond that, users only feed the distinct-user sketch).
"""

import datetime as dt
import gzip
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from discovery import sketch
from discovery.models import MAX_CLOSE_REASONS, MAX_HOSTNAMES, ip_key

_PRIVATE = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("fc00::/7"),
)
# A line longer than this is not a session record Cloudflare would write (they are about 1 KB).
MAX_LINE = 16_384
# More bytes than this in one session is not plausible (1 PiB).
MAX_BYTES = 2**50
MAX_USERS_PER_ORIGIN = 10_000
# Sessions before this or after that are not real times; they would wreck first/last seen and the charts.
_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp()
_LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC).timestamp()

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_ID = re.compile(r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-f]{32})?$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?$")
_REASON = re.compile(r"^[A-Z_0-9]{0,40}$")
_PROTOCOLS = {"TCP": "TCP", "UDP": "UDP", "ICMP": "ICMP", "ICMPV6": "ICMPV6"}
_TRANSPORTS = {"tcp": "TCP", "udp": "UDP", "quic": "UDP"}
# Lines are decoded as UTF-8 and parsed in one step, skipping json.loads's encoding sniffing.
_raw_decode = json.JSONDecoder().raw_decode


class Rejected(Exception):
    def __init__(self, kind: str):
        self.kind = kind


@dataclass
class OriginTotals:
    sessions: int = 0
    bytes_total: int = 0
    unreachable: int = 0
    first: float = _LATEST
    last: float = _EARLIEST
    tunnel_id: str = ""
    users: dict[str, int] = field(default_factory=dict)
    user_sketch: list[int] = field(default_factory=list)
    hostnames: set[str] = field(default_factory=set)
    close_reasons: dict[str, int] = field(default_factory=dict)
    # day number (days since 1970-01-01) -> [sessions, bytes, set of users]
    days: dict[int, list] = field(default_factory=dict)


@dataclass
class ObjectTotals:
    objects: int = 0
    records: int = 0
    accepted: int = 0
    malformed: int = 0
    wrong_type: int = 0
    absurd: int = 0
    public: int = 0
    origins: dict[tuple[str, str, int, str], OriginTotals] = field(default_factory=dict)

    def merge(self, other: "ObjectTotals") -> None:
        """Add another object's totals to these (a batch of objects is applied at once)."""
        for name in ("objects", "records", "accepted", "malformed", "wrong_type", "absurd", "public"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for key, theirs in other.origins.items():
            mine = self.origins.get(key)
            if mine is None:
                self.origins[key] = theirs
                continue
            mine.sessions += theirs.sessions
            mine.bytes_total += theirs.bytes_total
            mine.unreachable += theirs.unreachable
            mine.first = min(mine.first, theirs.first)
            mine.last = max(mine.last, theirs.last)
            mine.tunnel_id = theirs.tunnel_id or mine.tunnel_id
            for email, count in theirs.users.items():
                if email in mine.users or len(mine.users) < MAX_USERS_PER_ORIGIN:
                    mine.users[email] = mine.users.get(email, 0) + count
                else:
                    mine.user_sketch = sketch.merge(mine.user_sketch, [sketch.user_hash(email)])
            mine.user_sketch = sketch.merge(mine.user_sketch, theirs.user_sketch)
            mine.hostnames = set(sorted(mine.hostnames | theirs.hostnames)[:MAX_HOSTNAMES])
            for reason, count in theirs.close_reasons.items():
                if reason in mine.close_reasons or len(mine.close_reasons) < MAX_CLOSE_REASONS:
                    mine.close_reasons[reason] = mine.close_reasons.get(reason, 0) + count
            for day, (sessions, size, users) in theirs.days.items():
                bucket = mine.days.setdefault(day, [0, 0, set()])
                bucket[0] += sessions
                bucket[1] += size
                if len(bucket[2]) < MAX_USERS_PER_ORIGIN:
                    bucket[2] |= users

    def finish(self) -> None:
        """Turn each origin's users into a sketch; the per-user counts stay for top users."""
        for totals in self.origins.values():
            hashes = [sketch.user_hash(email) for email in totals.users]
            totals.user_sketch = sketch.merge(totals.user_sketch, hashes)


def _int(value) -> int:
    # bool is an int to Python but never a count or a port in a log line.
    if type(value) is not int:
        raise Rejected("wrong_type")
    return value


def _seconds(value) -> float:
    """Logpush timestamps: Unix nanoseconds (the default), Unix seconds or RFC 3339, as Unix seconds."""
    if type(value) is int:
        seconds = value / 1e9 if value > 1e14 else float(value)
    elif isinstance(value, str):
        if len(value) > 40:
            raise Rejected("absurd")
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Rejected("absurd") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        seconds = moment.timestamp()
    else:
        raise Rejected("wrong_type")
    if not _EARLIEST <= seconds < _LATEST:
        raise Rejected("absurd")
    return seconds


class Verdicts:
    """Checks already made on values that repeat from line to line and object to object (addresses, identities,
    destinations), shared by the objects of one batch. Each table stops growing at CACHE_LIMIT entries."""

    def __init__(self) -> None:
        self.ips: dict[str, tuple[str, str] | None] = {}
        self.emails: dict[str, bool] = {}
        self.destinations: dict[tuple, tuple[str, str, int, str] | str] = {}
        self.reasons: set[str] = set()


CACHE_LIMIT = 100_000


class Reader:
    """Adds up the lines of one object."""

    def __init__(self, verdicts: Verdicts | None = None) -> None:
        self.totals = ObjectTotals()
        verdicts = verdicts or Verdicts()
        self._ips = verdicts.ips
        self._emails = verdicts.emails
        self._destinations = verdicts.destinations
        self._reasons = verdicts.reasons

    def _address(self, value) -> tuple[str, str]:
        """(normalised IP, its key) for a private destination; Rejected otherwise."""
        if not isinstance(value, str):
            raise Rejected("wrong_type")
        cached = self._ips.get(value, False)
        if cached is False:
            if len(value) > 45:
                raise Rejected("absurd")
            try:
                ip = ipaddress.ip_address(value)
            except ValueError:
                raise Rejected("absurd") from None
            cached = (str(ip), ip_key(str(ip))) if any(ip in net for net in _PRIVATE) else None
            if len(self._ips) < CACHE_LIMIT:
                self._ips[value] = cached
        if cached is None:
            raise Rejected("public")
        return cached

    def _email(self, value) -> str:
        if value is None or value == "":
            return ""
        if not isinstance(value, str):
            raise Rejected("wrong_type")
        ok = self._emails.get(value)
        if ok is None:
            ok = len(value) <= 254 and _EMAIL.match(value) is not None
            if len(self._emails) < CACHE_LIMIT:
                self._emails[value] = ok
        if not ok:
            raise Rejected("absurd")
        return value.lower()

    def add(self, line: bytes) -> None:
        totals = self.totals
        totals.records += 1
        if len(line) > MAX_LINE:
            totals.absurd += 1
            return
        try:
            text = line.decode()
            record, end = _raw_decode(text)
        except ValueError:  # includes bytes that are not UTF-8
            totals.malformed += 1
            return
        if end != len(text) or type(record) is not dict:
            totals.malformed += 1
            return
        try:
            self._add(record)
        except Rejected as verdict:
            setattr(totals, verdict.kind, getattr(totals, verdict.kind) + 1)
        else:
            totals.accepted += 1

    def _destination(self, ip_value, port_value, protocol, vnet, tunnel, hostname) -> tuple[str, str, int, str]:
        """Validate the fields that name where a session went; they repeat for every session to one origin."""
        if protocol is None:
            raise Rejected("absurd")
        port = _int(port_value)
        if not 0 <= port <= 65535:
            raise Rejected("absurd")
        address, _ = self._address(ip_value)
        if not isinstance(vnet, str) or not isinstance(tunnel, str):
            raise Rejected("wrong_type")
        if not (_ID.match(vnet) and _ID.match(tunnel)):
            raise Rejected("absurd")
        if hostname and (not isinstance(hostname, str) or not _HOSTNAME.match(hostname)):
            raise Rejected("absurd")
        return (vnet.lower(), address, port, protocol)

    def _add(self, record: dict) -> None:
        get = record.get
        if "OriginIP" in record:
            ip_value, port_value, protocol_value = get("OriginIP"), get("OriginPort"), get("Protocol")
            protocols = _PROTOCOLS
            start, end = get("SessionStartTime"), get("SessionEndTime")
            sent, received = get("BytesSent", 0), get("BytesReceived", 0)
            reason = get("ConnectionCloseReason") or ""
            tunnel = get("DestinationTunnelID") or ""
            hostname = ""
        elif "DestinationIP" in record:
            ip_value, port_value = get("DestinationIP"), get("DestinationPort")
            protocol_value = get("TransportProtocol")
            protocols = _TRANSPORTS
            start = end = get("Datetime")
            sent = received = 0
            reason = tunnel = ""
            hostname = get("SNI") or ""
        else:
            raise Rejected("wrong_type")
        vnet = get("VirtualNetworkID") or ""
        # The type of the port is part of the signature: True == 1 and 443.0 == 443 to a dict, not to us.
        signature = (ip_value, port_value, type(port_value), protocol_value, vnet, tunnel, hostname)
        try:
            key = self._destinations.get(signature)
        except TypeError:  # a list or an object where a string or number belongs
            raise Rejected("wrong_type") from None
        if key is None:
            try:
                protocol = protocols.get(protocol_value) if isinstance(protocol_value, str) else None
                if protocol_value is not None and not isinstance(protocol_value, str):
                    raise Rejected("wrong_type")
                key = self._destination(ip_value, port_value, protocol, vnet, tunnel, hostname)
            except Rejected as verdict:
                key = verdict.kind
            if len(self._destinations) < CACHE_LIMIT:
                self._destinations[signature] = key
        if type(key) is str:
            raise Rejected(key)
        first = _seconds(start)
        last = _seconds(end) if end is not start else first
        if type(sent) is not int or type(received) is not int:
            raise Rejected("wrong_type")
        if not (0 <= sent < MAX_BYTES and 0 <= received < MAX_BYTES):
            raise Rejected("absurd")
        if reason and (type(reason) is not str or reason not in self._reasons):
            if type(reason) is not str:
                raise Rejected("wrong_type")
            if not _REASON.match(reason):
                raise Rejected("absurd")
            if len(self._reasons) < CACHE_LIMIT:
                self._reasons.add(reason)
        email = self._email(get("Email"))

        origin = self.totals.origins.get(key)
        if origin is None:
            origin = self.totals.origins[key] = OriginTotals()
        origin.sessions += 1
        size = sent + received
        origin.bytes_total += size
        if first < origin.first:
            origin.first = first
        if last > origin.last:
            origin.last = last
        if tunnel:
            origin.tunnel_id = tunnel.lower()
        if reason:
            reasons = origin.close_reasons
            if reason in reasons:
                reasons[reason] += 1
            elif len(reasons) < MAX_CLOSE_REASONS:
                reasons[reason] = 1
            if reason == "ORIGIN_UNREACHABLE":
                origin.unreachable += 1
        if hostname and len(origin.hostnames) < MAX_HOSTNAMES:
            origin.hostnames.add(hostname.lower().rstrip("."))
        day = int(last // 86400)
        bucket = origin.days.get(day)
        if bucket is None:
            bucket = origin.days[day] = [0, 0, set()]
        bucket[0] += 1
        bucket[1] += size
        if email:
            users = origin.users
            if email in users:
                users[email] += 1
            elif len(users) < MAX_USERS_PER_ORIGIN:
                users[email] = 1
            else:
                origin.user_sketch = sketch.merge(origin.user_sketch, [sketch.user_hash(email)])
            if len(bucket[2]) < MAX_USERS_PER_ORIGIN:
                bucket[2].add(email)


def read_lines(lines: Iterable[bytes], verdicts: Verdicts | None = None) -> ObjectTotals:
    reader = Reader(verdicts)
    add = reader.add
    for line in lines:
        line = line.rstrip(b"\r\n")
        if line:
            add(line)
    return reader.totals


def gzip_lines(body) -> Iterable[bytes]:
    """Lines of a gzipped stream, decompressed as they are read: the object is never whole in memory."""
    return gzip.GzipFile(fileobj=body, mode="rb")
