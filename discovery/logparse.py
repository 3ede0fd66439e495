"""Parsing Logpush network-session objects: gunzip, validate each line and add it up per origin, for a batch of
objects applied together.

Lines come from Cloudflare, but through a bucket anyone with write access could fill, so every field is
checked for type, range and size before it counts; refusals are counted by kind and never stop the object.
Both datasets are read: ``zero_trust_network_sessions`` (OriginIP, OriginPort, Protocol, ...) and
``gateway_network`` (DestinationIP, DestinationPort, TransportProtocol, SNI, Datetime).

Two paths give the same answer. The fast path takes the shape almost every network-session line has (orjson,
every field present, integer timestamps in nanoseconds): the fields naming where a session went, who made it
and how it ended repeat from line to line, so they are checked once per distinct combination and a line costs
a lookup and a few integer comparisons. Any other line (gateway_network lines among them) goes to the
reference checks (the standard library's parser and one check per field), which decide what it is: accepted
in another shape, or refused, and for which reason.

Memory does not follow the object or the bucket: objects are decompressed in bounded chunks, a batch keeps at
most Batch.GROUP_LIMIT groups of lines before folding them into per-origin totals, and per-user counts are
capped at MAX_USERS_PER_ORIGIN (beyond that, users only feed the distinct-user sketch).
"""

import contextlib
import datetime as dt
import ipaddress
import json
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Literal

import orjson

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
_NS = 1_000_000_000
_EARLIEST_NS = int(_EARLIEST) * _NS
_LATEST_NS = int(_LATEST) * _NS
_DAY_NS = 86_400 * _NS

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")
_ID = re.compile(r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-f]{32})?\Z")
_HOSTNAME = re.compile(r"^(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?\Z")
_REASON = re.compile(r"^[A-Z_0-9]{0,40}\Z")
_PROTOCOLS = {"TCP": "TCP", "UDP": "UDP", "ICMP": "ICMP", "ICMPV6": "ICMPV6"}
_TRANSPORTS = {"tcp": "TCP", "udp": "UDP", "quic": "UDP"}
# The reference parser: lines are decoded as UTF-8 and parsed in one step, skipping json.loads's encoding
# sniffing. It reads integers of any size exactly, where orjson turns those beyond 64 bits into floats.
_raw_decode = json.JSONDecoder().raw_decode

# The fields the fast path reads, in two C calls per line; a line without one of them takes the reference path.
_DESTINATION_FIELDS = itemgetter("OriginIP", "OriginPort", "Protocol", "VirtualNetworkID", "DestinationTunnelID")
_SESSION_FIELDS = itemgetter(
    "ConnectionCloseReason", "Email", "SessionStartTime", "SessionEndTime", "BytesSent", "BytesReceived"
)

# Decompressed bytes handed to the parser at a time: the object is never whole in memory, nor is a gzip bomb.
CHUNK = 1 << 20
OUT_CHUNK = 1 << 20


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

    COUNTS = ("objects", "records", "accepted", "malformed", "wrong_type", "absurd", "public")

    def add_counts(self, other: "ObjectTotals") -> None:
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _int(value) -> int:
    # bool is an int to Python but never a count or a port in a log line.
    if type(value) is not int:
        raise Rejected("wrong_type")
    return value


def _nanoseconds(value) -> int:
    """Logpush timestamps: Unix nanoseconds (the default), Unix seconds or RFC 3339, as Unix nanoseconds."""
    if type(value) is int:
        seconds = value / 1e9 if value > 1e14 else float(value)
        nanoseconds = value if value > 1e14 else value * _NS
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
        nanoseconds = round(seconds * 1e6) * 1000
    else:
        raise Rejected("wrong_type")
    if not _EARLIEST <= seconds < _LATEST:
        raise Rejected("absurd")
    return nanoseconds


CACHE_LIMIT = 100_000


class Verdicts:
    """Checks already made on values that repeat from line to line and object to object (addresses, identities,
    destinations, whole session shapes), shared by the objects of one batch. Each table stops growing at
    CACHE_LIMIT entries."""

    def __init__(self) -> None:
        self.ips: dict[str, tuple[str, str] | None] = {}
        self.emails: dict[str, bool] = {}
        self.destinations: dict[tuple, tuple[str, str, int, str] | str] = {}
        # Close reasons already checked; "" and None stand for none.
        self.reasons: set[str | None] = {"", None}
        # A user as logged -> as counted (lower case); only valid ones.
        self.users: dict[str, str] = {}


def _group(where: tuple) -> list:
    """The lines to one destination, where ``where`` is (origin key, tunnel, hostname):

    [sessions, bytes, first ns, last ns, {day: [sessions, bytes, {user: sessions}]} for days other than the
     main one, main day's start ns, main day's end ns, {user: sessions} on the main day, {close reason: sessions},
     where]

    An object covers minutes, so nearly every line of a group ends on the group's main day (the day its first
    line ended): those count in the group's own tables, and only the others in the per-day table. The user ""
    and the close reason "" (or None) stand for none.
    """
    return [0, 0, _LATEST_NS, _EARLIEST_NS, {}, 0, 0, defaultdict(int), defaultdict(int), where]


def _other_day(group: list, end: int, size: int, user: str) -> None:
    """A line that did not end on the group's main day (or the group's first line, which sets the main day)."""
    if group[0] == 1 and not group[4]:
        day = end // _DAY_NS
        group[5], group[6] = day * _DAY_NS, (day + 1) * _DAY_NS
        group[7][user] += 1
        return
    bucket = group[4].setdefault(end // _DAY_NS, [0, 0, defaultdict(int)])
    bucket[0] += 1
    bucket[1] += size
    bucket[2][user] += 1


def _count(group: list, start: int, end: int, size: int, user: str, reason) -> None:
    group[0] += 1
    group[1] += size
    group[2] = min(group[2], start)
    group[3] = max(group[3], end)
    group[8][reason] += 1
    if group[5] <= end < group[6]:
        group[7][user] += 1
    else:
        _other_day(group, end, size, user)


def _days(group: list) -> Iterable[tuple[int, int, int, dict[str, int]]]:
    """(day, sessions, bytes, {user: sessions}) of a group's lines."""
    sessions, size = group[0], group[1]
    for day, (day_sessions, day_size, users) in group[4].items():
        sessions -= day_sessions
        size -= day_size
        yield day, day_sessions, day_size, users
    if sessions:
        yield group[5] // _DAY_NS, sessions, size, group[7]


class Reader:
    """Adds the lines of one object to its batch's groups and counts them, accepted or refused by kind."""

    def __init__(self, batch: "Batch") -> None:
        self.totals = ObjectTotals()
        verdicts = batch.verdicts
        self._ips = verdicts.ips
        self._emails = verdicts.emails
        self._destinations = verdicts.destinations
        self._reasons = verdicts.reasons
        self._users = verdicts.users
        # A fast-path destination (the raw values) -> its group, or None when the reference checks decide.
        self.groups = batch.groups

    # -- the fast path -------------------------------------------------------------------------------------

    def add_lines(self, lines: list[bytes]) -> None:
        """Add lines (without their newlines; empty ones are skipped)."""
        if b"" in lines:
            lines = [line for line in lines if line]
        self.totals.records += len(lines)
        if max(map(len, lines), default=0) > MAX_LINE:
            for line in lines:
                if len(line) > MAX_LINE:
                    self.add(line, counted=True)
            lines = [line for line in lines if len(line) <= MAX_LINE]
        groups = self.groups
        users = self._users
        reasons = self._reasons
        loads = orjson.loads
        destination_of, session_of = _DESTINATION_FIELDS, _SESSION_FIELDS
        earliest, latest, max_bytes = _EARLIEST_NS, _LATEST_NS, MAX_BYTES
        slow = self.add
        for line in lines:
            try:
                record = loads(line)
                destination = destination_of(record)
                reason, email, start, end, sent, received = session_of(record)
                group = groups.get(destination)
                user = users.get(email)
                known_reason = reason in reasons
            except (ValueError, KeyError, TypeError):  # not JSON, another dataset or shape, an unhashable value
                slow(line, counted=True)
                continue
            if group is None or user is None or not known_reason:
                if not self._learn(destination, reason, email):
                    slow(line, counted=True)
                    continue
                group = groups[destination]
                assert group is not None  # _learn took the destination
                user = users[email]
            if (
                # True == 1 and 1.0 == 1 to a dict, not to us
                not type(destination[1]) is type(start) is type(end) is type(sent) is type(received) is int
                or not (earliest <= start < latest and earliest <= end < latest)
                or not (0 <= sent < max_bytes and 0 <= received < max_bytes)
            ):
                slow(line, counted=True)
                continue
            size = sent + received
            group[0] += 1
            group[1] += size
            if start < group[2]:
                group[2] = start
            if end > group[3]:
                group[3] = end
            group[8][reason] += 1
            if group[5] <= end < group[6]:
                group[7][user] += 1
            else:
                _other_day(group, end, size, user)

    def _learn(self, destination: tuple, reason, email) -> bool:
        """Check the parts of a line the batch has not met yet (destination, user, close reason) and remember
        them; False when one is not what the fast path accepts (the reference checks then decide)."""
        if destination not in self.groups:
            ip, port, protocol, vnet, tunnel = destination
            group = None
            if type(port) is int and type(protocol) is str:
                with contextlib.suppress(Rejected):
                    key = self._destination_cached(ip, port, protocol, _PROTOCOLS, vnet or "", tunnel or "", "")
                    group = _group((key, (tunnel or "").lower(), ""))
            self.groups[destination] = group
        if self.groups[destination] is None:
            return False
        if email not in self._users:
            try:
                user = self._email(email)
            except Rejected:
                return False
            if len(self._users) >= CACHE_LIMIT:
                return False
            self._users[email] = user
        if reason not in self._reasons:
            if reason is not None and type(reason) is not str:
                return False
            try:
                self._reason(reason or "")
            except Rejected:
                return False
            if reason not in self._reasons:  # the table is full
                return False
        return True

    # -- the reference path --------------------------------------------------------------------------------

    def add(self, line: bytes, *, counted: bool = False) -> None:
        """Check one line field by field and count it, accepted or refused by kind."""
        totals = self.totals
        totals.records += 0 if counted else 1
        if len(line) > MAX_LINE:
            totals.absurd += 1
            return
        line = line.rstrip(b"\r")
        if not line:
            totals.records -= 1
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
            shape, start, end, size = self._check(record)
        except Rejected as verdict:
            setattr(totals, verdict.kind, getattr(totals, verdict.kind) + 1)
            return
        key, tunnel, reason, user, hostname = shape
        where = (key, tunnel, hostname)
        group = self.groups.get(where)
        if group is None:
            group = self.groups[where] = _group(where)
        _count(group, start, end, size, user, reason)

    def _address(self, value) -> tuple[str, str]:
        """(normalised IP, its key) for a private destination; Rejected otherwise."""
        if not isinstance(value, str):
            raise Rejected("wrong_type")
        cached: tuple[str, str] | Literal[False] | None = self._ips.get(value, False)
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

    def _reason(self, reason) -> str:
        if reason and (type(reason) is not str or reason not in self._reasons):
            if type(reason) is not str:
                raise Rejected("wrong_type")
            if not _REASON.match(reason):
                raise Rejected("absurd")
            if len(self._reasons) < CACHE_LIMIT:
                self._reasons.add(reason)
        return reason

    def _destination_cached(self, ip_value, port_value, protocol_value, protocols, vnet, tunnel, hostname):
        """The origin key of a destination, or Rejected; TypeError when a value cannot be a dict key."""
        # The type of the port is part of the signature: True == 1 and 443.0 == 443 to a dict, not to us.
        signature = (ip_value, port_value, type(port_value), protocol_value, vnet, tunnel, hostname)
        key = self._destinations.get(signature)
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
        return key

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

    def _check(self, record: dict) -> tuple[tuple, int, int, int]:
        """(shape, start ns, end ns, bytes) of an acceptable record; Rejected with the first reason otherwise."""
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
        try:
            key = self._destination_cached(ip_value, port_value, protocol_value, protocols, vnet, tunnel, hostname)
        except TypeError:  # a list or an object where a string or number belongs
            raise Rejected("wrong_type") from None
        first = _nanoseconds(start)
        last = _nanoseconds(end) if end is not start else first
        if type(sent) is not int or type(received) is not int:
            raise Rejected("wrong_type")
        if not (0 <= sent < MAX_BYTES and 0 <= received < MAX_BYTES):
            raise Rejected("absurd")
        reason = self._reason(reason)
        email = self._email(get("Email"))
        hostname = hostname.lower().rstrip(".") if hostname else ""
        return (key, tunnel.lower(), reason, email, hostname), first, last, sent + received

    def rejected(self) -> int:
        totals = self.totals
        return totals.malformed + totals.wrong_type + totals.absurd + totals.public

    def gzip_lines(self, body) -> Iterable[list[bytes]]:
        """The lines of a gzipped body (file-like, read in chunks; several gzip members are allowed), a chunk's
        worth at a time. Raises zlib.error or EOFError when the body is not whole gzip."""
        rest = b""
        # A line that outgrows MAX_LINE is counted once and skipped up to its end, without being kept.
        skipping = False
        for chunk in _gunzip(body):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            if skipping and lines:
                lines[0] = b""
                skipping = False
            yield lines
            if len(rest) > MAX_LINE:
                if not skipping:
                    self.add(rest)
                rest = b""
                skipping = True
        if rest and not skipping:
            yield [rest]


class Batch:
    """The objects applied together: their lines grouped by destination, their counts, and the checks they share.

    Groups are folded into per-origin totals whenever they hold more than GROUP_LIMIT destinations or
    ENTRY_LIMIT users, close reasons and days, so a batch whose lines never repeat stays bounded too.
    """

    GROUP_LIMIT = 16_384
    ENTRY_LIMIT = 200_000

    def __init__(self) -> None:
        self.verdicts = Verdicts()
        self.totals = ObjectTotals()
        self.groups: dict[tuple, list | None] = {}

    def read_gzip(self, body) -> ObjectTotals:
        """Read one gzipped object into the batch and return its counts. A body that is not whole gzip counts as
        one more malformed line after the lines read before the break."""
        reader = Reader(self)
        try:
            for chunk, lines in enumerate(reader.gzip_lines(body)):
                reader.add_lines(lines)
                # Counting entries costs a walk over the groups: every 16th chunk (at most ~200,000 lines) is enough.
                if len(self.groups) > self.GROUP_LIMIT or (chunk % 16 == 15 and self._entries() > self.ENTRY_LIMIT):
                    self._fold()
        except (zlib.error, EOFError):
            reader.totals.records += 1
            reader.totals.malformed += 1
            raise BrokenObject(self._add(reader)) from None
        return self._add(reader)

    def read_lines(self, lines: Iterable[bytes]) -> ObjectTotals:
        """Read one object's lines (a trailing newline on each is allowed) and return its counts."""
        reader = Reader(self)
        reader.add_lines([line.rstrip(b"\r\n") for line in lines])
        return self._add(reader)

    def _entries(self) -> int:
        groups = [g for g in self.groups.values() if g]
        return sum(len(g[7]) + len(g[8]) + sum(len(bucket[2]) + 1 for bucket in g[4].values()) for g in groups)

    def _add(self, reader: Reader) -> ObjectTotals:
        counts = reader.totals
        counts.objects = 1
        counts.accepted = counts.records - reader.rejected()
        self.totals.add_counts(counts)
        return counts

    def _fold(self) -> None:
        """Add the groups to the per-origin totals and start afresh."""
        origins = self.totals.origins
        for group in self.groups.values():
            if not group or not group[0]:
                continue
            sessions, size, first, last, _, _, _, _, reasons, (key, tunnel, hostname) = group
            origin = origins.get(key)
            if origin is None:
                origin = origins[key] = OriginTotals()
            origin.sessions += sessions
            origin.bytes_total += size
            origin.first = min(origin.first, first / 1e9)
            # The tunnel of the newest session is the one that carries the origin now.
            if tunnel and last / 1e9 >= origin.last:
                origin.tunnel_id = tunnel
            origin.last = max(origin.last, last / 1e9)
            close = origin.close_reasons
            for reason, count in reasons.items():
                if not reason:
                    continue
                if reason in close:
                    close[reason] += count
                elif len(close) < MAX_CLOSE_REASONS:
                    close[reason] = count
                if reason == "ORIGIN_UNREACHABLE":
                    origin.unreachable += count
            if hostname and len(origin.hostnames) < MAX_HOSTNAMES:
                origin.hostnames.add(hostname)
            users = origin.users
            for day, day_sessions, day_size, day_users in _days(group):
                bucket = origin.days.get(day)
                if bucket is None:
                    bucket = origin.days[day] = [0, 0, set()]
                bucket[0] += day_sessions
                bucket[1] += day_size
                for email, count in day_users.items():
                    if not email:
                        continue
                    if len(bucket[2]) < MAX_USERS_PER_ORIGIN:
                        bucket[2].add(email)
                    if email in users:
                        users[email] += count
                    elif len(users) < MAX_USERS_PER_ORIGIN:
                        users[email] = count
                    else:
                        origin.user_sketch = sketch.merge(origin.user_sketch, [sketch.user_hash(email)])
        self.groups.clear()  # in place: the reader of the object being read holds this same table

    def finish(self) -> ObjectTotals:
        """The batch's totals per origin; each origin's users become a sketch too."""
        self._fold()
        for origin in self.totals.origins.values():
            origin.user_sketch = sketch.merge(origin.user_sketch, [sketch.user_hash(e) for e in origin.users])
        return self.totals


class BrokenObject(Exception):
    """The object is not whole gzip; counts holds what was read of it, the break counted as one malformed line."""

    def __init__(self, counts: ObjectTotals):
        self.counts = counts


def read_lines(lines: Iterable[bytes]) -> ObjectTotals:
    """The totals of one object's lines, as a batch of its own."""
    batch = Batch()
    batch.read_lines(lines)
    return batch.finish()


def _gunzip(body) -> Iterable[bytes]:
    """Decompressed bytes of a gzip stream, at most OUT_CHUNK at a time. Raises zlib.error when the bytes are not
    gzip and EOFError when the stream stops inside a member."""
    inflater = zlib.decompressobj(wbits=31)
    fed = False  # whether the current member has had any input
    while data := body.read(CHUNK):
        while data:
            fed = True
            out = inflater.decompress(data, OUT_CHUNK)
            data = inflater.unconsumed_tail
            if inflater.eof:
                # Another gzip member may follow (concatenated gzip files are one valid gzip stream).
                data = inflater.unused_data + data
                inflater = zlib.decompressobj(wbits=31)
                fed = False
            if out:
                yield out
    if fed:
        raise EOFError("the gzip stream ends inside a member")
