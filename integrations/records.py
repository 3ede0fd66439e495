"""What Gatehouse reads from Cloudflare, as small frozen records.

`integrations/cloudflare.py` builds each record once from the SDK's own response model; callers read attributes
and never see the SDK's types or a raw dict. Everything Cloudflare sends is untrusted text: every string is cut
to the length Gatehouse stores and cleared of control and bidirectional-override characters (so one name cannot
be made to look like another), and every missing field gets its default here, in one place.
"""

import copy
import ipaddress
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from typing import Any

# C0/C1 controls, and the bidirectional embeddings, overrides and isolates (U+202A to U+202E, U+2066 to U+2069).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def text(value: Any, limit: int) -> str:
    """`value` as a plain one-line string of at most `limit` characters ("" for None)."""
    if value is None:
        return ""
    return _UNSAFE.sub("", str(value))[:limit]


def timestamp(value: Any) -> datetime | None:
    """A timezone-aware datetime, or None for anything else (the SDK parses ISO 8601 strings already)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else None
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else None
    return None


def field(model: Any, name: str, default: Any = None) -> Any:
    """One field of an SDK model (or of a plain mapping, as in an application's inline policies)."""
    if isinstance(model, dict):
        return model.get(name, default)
    value = getattr(model, name, default)
    return default if value is None else value


# --- Tunnels, connectors, routes, virtual networks, zones and DNS records --------------------------------------
# Lengths are the tunnels app's columns. Ids end up in Cloudflare URLs and in UUID columns, so an object whose id
# is not of the expected form is refused whole (`Malformed`) rather than stored or sent back.

TUNNEL_STATUSES = ("healthy", "degraded", "down", "inactive")
_TAG = re.compile(r"^[0-9a-f]{32}\Z")
# Integer columns are 32-bit on PostgreSQL.
_INT_MAX = 2**31 - 1
_CNAME_SUFFIX = ".cfargotunnel.com"


class Malformed(ValueError):
    """Cloudflare sent an object Gatehouse cannot identify (its id is missing or not of the expected form)."""


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _required_uuid(value: Any, what: str) -> uuid.UUID:
    parsed = _uuid(value) if value is not None else None
    if parsed is None:
        raise Malformed(f"a {what} without a valid id")
    return parsed


def _tag(value: Any, what: str) -> str:
    """A 32-hex-digit Cloudflare tag (zone and DNS record ids)."""
    if not isinstance(value, str) or not _TAG.match(value):
        raise Malformed(f"a {what} without a valid id")
    return value


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _INT_MAX:
        return value
    return None


def _wire(value: Any) -> dict[str, Any]:
    """A configuration exactly as Cloudflare sent it: its own key names (camelCase), unknown keys included."""
    return copy.deepcopy(value) if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class Tunnel:
    id: uuid.UUID
    name: str
    status: str
    remote_config: bool
    created_at: datetime | None
    conns_active_at: datetime | None
    conns_inactive_at: datetime | None

    @classmethod
    def from_sdk(cls, model: Any) -> "Tunnel":
        status = field(model, "status")
        return cls(
            id=_required_uuid(field(model, "id"), "tunnel"),
            name=text(field(model, "name"), 255),
            status=status if status in TUNNEL_STATUSES else "inactive",
            remote_config=field(model, "remote_config") is True or field(model, "config_src") == "cloudflare",
            created_at=timestamp(field(model, "created_at")),
            conns_active_at=timestamp(field(model, "conns_active_at")),
            conns_inactive_at=timestamp(field(model, "conns_inactive_at")),
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """One connection of a connector to a Cloudflare data centre."""

    colo_name: str
    origin_ip: str
    opened_at: datetime | None
    is_pending_reconnect: bool

    @classmethod
    def from_sdk(cls, model: Any) -> "Connection":
        return cls(
            colo_name=text(field(model, "colo_name"), 10),
            origin_ip=text(field(model, "origin_ip"), 45),
            opened_at=timestamp(field(model, "opened_at")),
            is_pending_reconnect=field(model, "is_pending_reconnect") is True,
        )


@dataclass(frozen=True, slots=True)
class Connector:
    """A cloudflared replica running a tunnel."""

    id: uuid.UUID
    version: str
    arch: str
    run_at: datetime | None
    config_version: int | None
    conns: tuple[Connection, ...]

    @classmethod
    def from_sdk(cls, model: Any) -> "Connector":
        return cls(
            id=_required_uuid(field(model, "id"), "connector"),
            version=text(field(model, "version"), 40),
            arch=text(field(model, "arch"), 40),
            run_at=timestamp(field(model, "run_at")),
            config_version=_count(field(model, "config_version")),
            conns=tuple(Connection.from_sdk(conn) for conn in field(model, "conns") or []),
        )


@dataclass(frozen=True, slots=True)
class IngressRule:
    """The fields of an ingress rule Gatehouse reads; `raw` is the rule exactly as read, to be sent back."""

    hostname: str
    path: str
    service: str
    raw: dict[str, Any]

    @classmethod
    def from_wire(cls, rule: dict[str, Any]) -> "IngressRule":
        return cls(
            hostname=text(rule.get("hostname"), 253),
            path=text(rule.get("path"), 255),
            service=text(rule.get("service"), 500),
            raw=rule,
        )

    @property
    def catch_all(self) -> bool:
        return self.hostname in ("", "*") and not self.path


@dataclass(frozen=True, slots=True)
class TunnelConfiguration:
    """A remotely managed tunnel's configuration: its version, and `config` whole, as Cloudflare sent it.

    A PUT replaces the whole configuration, so a write starts from `config` and changes only the rules it means
    to; `ingress` is the same rules parsed, in order. Built from the answer's `result` as JSON, not from the SDK's
    model: a model dumped back is not always what came in.
    """

    version: int | None
    config: dict[str, Any]
    ingress: tuple[IngressRule, ...]

    @classmethod
    def from_sdk(cls, model: Any) -> "TunnelConfiguration":
        config = _wire(field(model, "config"))
        rules = config.get("ingress")
        return cls(
            version=_count(field(model, "version")),
            config=config,
            ingress=tuple(IngressRule.from_wire(r) for r in rules if isinstance(r, dict))
            if isinstance(rules, list)
            else (),
        )


@dataclass(frozen=True, slots=True)
class Route:
    """A private network route: `network` (CIDR) in a virtual network goes through a tunnel."""

    id: uuid.UUID
    network: str
    tunnel_id: uuid.UUID
    virtual_network_id: uuid.UUID | None
    comment: str
    created_at: datetime | None

    @classmethod
    def from_sdk(cls, model: Any) -> "Route":
        try:
            network = str(ipaddress.ip_network(str(field(model, "network", "")), strict=False))
        except ValueError:
            raise Malformed("a route without a valid network") from None
        return cls(
            id=_required_uuid(field(model, "id"), "route"),
            network=network,
            tunnel_id=_required_uuid(field(model, "tunnel_id"), "route tunnel"),
            virtual_network_id=_uuid(field(model, "virtual_network_id")),
            comment=text(field(model, "comment"), 500),
            created_at=timestamp(field(model, "created_at")),
        )


@dataclass(frozen=True, slots=True)
class VirtualNetwork:
    id: uuid.UUID
    name: str
    comment: str
    is_default: bool
    created_at: datetime | None = None

    @classmethod
    def from_sdk(cls, model: Any) -> "VirtualNetwork":
        return cls(
            id=_required_uuid(field(model, "id"), "virtual network"),
            name=text(field(model, "name"), 255),
            comment=text(field(model, "comment"), 500),
            is_default=field(model, "is_default_network") is True,
            created_at=timestamp(field(model, "created_at")),
        )


@dataclass(frozen=True, slots=True)
class Zone:
    id: str
    name: str

    @classmethod
    def from_sdk(cls, model: Any) -> "Zone":
        return cls(id=_tag(field(model, "id"), "zone"), name=text(field(model, "name"), 253).lower())


@dataclass(frozen=True, slots=True)
class DnsRecord:
    id: str
    name: str
    type: str
    content: str
    proxied: bool
    # Gatehouse marks the records it creates here; a record without the mark is someone else's.
    comment: str = ""

    @classmethod
    def from_sdk(cls, model: Any) -> "DnsRecord":
        return cls(
            id=_tag(field(model, "id"), "DNS record"),
            name=text(field(model, "name"), 253).lower(),
            type=text(field(model, "type"), 10),
            content=text(field(model, "content"), 253),
            proxied=field(model, "proxied") is True,
            comment=text(field(model, "comment"), 100),
        )

    @property
    def tunnel_id(self) -> uuid.UUID | None:
        """The tunnel a CNAME to `<tunnel id>.cfargotunnel.com` points at."""
        if self.type != "CNAME" or not self.content.lower().endswith(_CNAME_SUFFIX):
            return None
        return _uuid(self.content[: -len(_CNAME_SUFFIX)])


# --- Access: applications, policies, service tokens, groups, users and sessions --------------------------------
# Cloudflare's ids are UUIDs; names and hostnames are cut to what Gatehouse's columns hold.
_ID = 64
_NAME = 200
_HOST = 300
_EMAIL = 254
_DURATION = 32

# Fields of an application Cloudflare computes: read, never sent back on a PUT (`policies` is sent on its own).
APP_READ_ONLY = frozenset({"id", "aud", "created_at", "updated_at", "policies"})


def _access_id(value: Any, what: str) -> str:
    """An Access object's id in its canonical form; Malformed when it is missing or not a UUID."""
    parsed = _uuid(value) if value is not None else None
    if parsed is None:
        raise Malformed(f"{what} without a valid id")
    return str(parsed)


def _plain(model: Any) -> Any:
    """An SDK model (or a list or mapping of them) as JSON-ready data, with only the fields Cloudflare sent."""
    if hasattr(model, "to_dict"):
        return model.to_dict(mode="json")
    if isinstance(model, dict):
        return {key: _plain(value) for key, value in model.items()}
    if isinstance(model, list | tuple):
        return [_plain(item) for item in model]
    return model


def _rules(value: Any) -> tuple[dict[str, Any], ...]:
    """Include/exclude/require rules as single-key mappings, e.g. {"email": {"email": "a@b.c"}}."""
    return tuple(rule for rule in (_plain(item) for item in value or []) if isinstance(rule, dict))


# The one field that names whom a rule matches, for the rule types Gatehouse reasons about.
_RULE_SUBJECT = {"email": "email", "email_domain": "domain", "group": "id", "service_token": "token_id"}


def rule_subject(rule: dict[str, Any]) -> tuple[str, str]:
    """A rule as (type, whom it names): ("email", "a@b.c"), ("email_domain", "b.c"), ("group", id),
    ("service_token", id); ("everyone", "") and other types with "". Emails and domains are lower case."""
    if len(rule) != 1:
        return "", ""
    ((kind, body),) = rule.items()
    subject = body.get(_RULE_SUBJECT[kind], "") if kind in _RULE_SUBJECT and isinstance(body, dict) else ""
    subject = text(subject, _EMAIL)
    return text(kind, _DURATION), subject.lower().lstrip("@") if kind in ("email", "email_domain") else subject


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """A reusable policy from the policies list, or a policy as an application carries it (with `precedence`)."""

    id: str
    name: str
    decision: str
    include: tuple[dict[str, Any], ...] = ()
    exclude: tuple[dict[str, Any], ...] = ()
    require: tuple[dict[str, Any], ...] = ()
    session_duration: str = ""
    app_count: int = 0
    precedence: int = 0

    @classmethod
    def from_sdk(cls, model: Any) -> "AccessPolicy":
        precedence = field(model, "precedence", 0)
        app_count = field(model, "app_count", 0)
        return cls(
            id=_access_id(field(model, "id"), "a policy"),
            name=text(field(model, "name"), _NAME),
            decision=text(field(model, "decision"), _DURATION),
            include=_rules(field(model, "include")),
            exclude=_rules(field(model, "exclude")),
            require=_rules(field(model, "require")),
            session_duration=text(field(model, "session_duration"), _DURATION),
            app_count=int(app_count) if isinstance(app_count, int | float) else 0,
            precedence=int(precedence) if isinstance(precedence, int | float) else 0,
        )

    @property
    def service_token_ids(self) -> frozenset[str]:
        """The service tokens this policy's include rules name."""
        return frozenset(
            subject for kind, subject in map(rule_subject, self.include) if kind == "service_token" and subject
        )

    def admits_service_token(self, token_id: str) -> bool:
        """Whether a request carrying this service token matches the policy (a Service Auth policy)."""
        return self.decision == "non_identity" and (
            token_id in self.service_token_ids
            or any(kind == "any_valid_service_token" for kind, _subject in map(rule_subject, self.include))
        )


@dataclass(frozen=True, slots=True)
class AccessApplication:
    """An Access application; `writable` is every field it was read with that a PUT may send back unchanged."""

    id: str
    name: str
    type: str
    domain: str
    destinations: tuple[dict[str, Any], ...]
    policies: tuple[AccessPolicy, ...]
    writable: dict[str, Any]

    @classmethod
    def from_sdk(cls, model: Any) -> "AccessApplication":
        data = _plain(model)
        policies = tuple(AccessPolicy.from_sdk(p) for p in data.get("policies") or [] if isinstance(p, dict))
        return cls(
            id=_access_id(data.get("id"), "an application"),
            name=text(data.get("name") or data.get("id"), _NAME),
            type=text(data.get("type"), _DURATION),
            domain=text(data.get("domain"), _HOST),
            destinations=tuple(d for d in data.get("destinations") or [] if isinstance(d, dict)),
            policies=tuple(sorted(policies, key=lambda p: p.precedence)),
            writable={k: v for k, v in data.items() if k not in APP_READ_ONLY and v is not None},
        )

    def inline_policies(self, reusable_ids: Collection[str]) -> tuple[AccessPolicy, ...]:
        """Policies that exist only on this application (legacy, app-scoped), given the account's reusable ones.

        Cloudflare reports both kinds alike inside an application; only the reusable list tells them apart.
        """
        return tuple(p for p in self.policies if p.id not in reusable_ids)

    def references(self, reusable_ids: Collection[str]) -> list[dict[str, Any]]:
        """The application's reusable policies as the `{id, precedence}` references a PUT takes."""
        return [{"id": p.id, "precedence": p.precedence} for p in self.policies if p.id in reusable_ids]


@dataclass(frozen=True, slots=True)
class AccessGroup:
    id: str
    name: str
    include: tuple[dict[str, Any], ...]

    @classmethod
    def from_sdk(cls, model: Any) -> "AccessGroup":
        return cls(
            id=_access_id(field(model, "id"), "a group"),
            name=text(field(model, "name"), _NAME),
            include=_rules(field(model, "include")),
        )


@dataclass(frozen=True, slots=True)
class ServiceToken:
    """A service token as list and get report it: never its secret, which only the create answer carries."""

    id: str
    name: str
    client_id: str
    duration: str
    expires_at: datetime | None

    @classmethod
    def from_sdk(cls, model: Any) -> "ServiceToken":
        return cls(
            id=_access_id(field(model, "id"), "a service token"),
            name=text(field(model, "name"), _NAME),
            client_id=text(field(model, "client_id"), _NAME),
            duration=text(field(model, "duration"), _DURATION),
            expires_at=timestamp(field(model, "expires_at")),
        )


@dataclass(frozen=True, slots=True)
class NewServiceToken:
    """What creating a token answers, once. The secret is left out of repr so that it cannot reach a log line."""

    id: str
    client_id: str
    client_secret: str = dc_field(repr=False)

    @classmethod
    def from_sdk(cls, model: Any) -> "NewServiceToken":
        return cls(
            id=_access_id(field(model, "id"), "a new service token"),
            client_id=text(field(model, "client_id"), _NAME),
            client_secret=str(field(model, "client_secret", "")),
        )


@dataclass(frozen=True, slots=True)
class AccessUser:
    id: str
    email: str
    name: str

    @classmethod
    def from_sdk(cls, model: Any) -> "AccessUser":
        return cls(
            id=_access_id(field(model, "id"), "a user"),
            email=text(field(model, "email"), _EMAIL).lower(),
            name=text(field(model, "name"), _NAME),
        )


@dataclass(frozen=True, slots=True)
class AccessSession:
    """One of a user's active sessions: which applications it covers and when it ends."""

    nonce: str
    expires_at: datetime | None
    app_ids: tuple[str, ...]

    @classmethod
    def from_sdk(cls, model: Any) -> "AccessSession":
        metadata = field(model, "metadata")
        expiration = field(model, "expiration")
        apps = field(metadata, "apps", {}) if metadata is not None else {}
        return cls(
            nonce=text(field(metadata, "nonce") if metadata is not None else field(model, "name"), _ID),
            expires_at=datetime.fromtimestamp(expiration, UTC) if isinstance(expiration, int | float) else None,
            app_ids=tuple(text(app_id, _ID) for app_id in apps or {}),
        )


# --- Notifications: webhook destinations and notification policies (push events) ------------------------------
# Alerting ids are Cloudflare's (32 hex digits for destinations, UUIDs for policies) and go back into URLs, so one
# that is neither is refused whole.

_ALERT_ID = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\Z")


def _alert_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _ALERT_ID.match(value):
        raise Malformed(f"a {what} without a valid id")
    return value


@dataclass(frozen=True, slots=True)
class WebhookDestination:
    id: str
    name: str
    url: str
    last_success: datetime | None
    last_failure: datetime | None

    @classmethod
    def from_sdk(cls, model: Any) -> "WebhookDestination":
        return cls(
            id=_alert_id(field(model, "id"), "webhook destination"),
            name=text(field(model, "name"), _NAME),
            url=text(field(model, "url"), 2048),
            last_success=timestamp(field(model, "last_success")),
            last_failure=timestamp(field(model, "last_failure")),
        )


@dataclass(frozen=True, slots=True)
class NotificationPolicy:
    id: str
    name: str
    alert_type: str
    enabled: bool
    webhook_ids: tuple[str, ...]

    @classmethod
    def from_sdk(cls, model: Any) -> "NotificationPolicy":
        mechanisms = field(model, "mechanisms")
        webhooks = field(mechanisms, "webhooks", []) if mechanisms is not None else []
        return cls(
            id=_alert_id(field(model, "id"), "notification policy"),
            name=text(field(model, "name"), _NAME),
            alert_type=text(field(model, "alert_type"), 64),
            enabled=field(model, "enabled") is True,
            webhook_ids=tuple(text(field(w, "id"), 64) for w in webhooks or []),
        )


def created_id(model: Any, what: str) -> str:
    """The id a create answers with (`{id}` only, for alerting objects)."""
    return _alert_id(field(model, "id"), what)
