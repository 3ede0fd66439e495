"""How the simulated Cloudflare behaves between requests: tunnel status, connectors, sessions, the clock.

Tunnel status follows its connectors the way Cloudflare reports it: `inactive` until a connector first runs,
`healthy` while every connector holds all its connections, `degraded` when some connections are dropped
(Cloudflare keeps tracking a dropped connection for a few minutes with `is_pending_reconnect: true`), and
`down` when no connection is serving. Access sessions exist for users whom an application's policies admit;
revoking ends them, and the clock only brings a session back for a user some policy still admits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import random
import re
import time
import uuid
from datetime import UTC, datetime

from cloudflare_sim import alerting
from cloudflare_sim.store import Doc, Store

CONNS_PER_CONNECTOR = 4
# Cloudflare keeps listing a dropped connection (is_pending_reconnect) for several minutes.
PENDING_RECONNECT_SECONDS = 300
COLO_PAIRS = {
    "eu": [("FRA", "AMS"), ("LHR", "CDG"), ("AMS", "DUB")],
    "us": [("IAD", "EWR"), ("ORD", "DFW"), ("SJC", "LAX"), ("SEA", "PDX")],
    "ap": [("SIN", "NRT"), ("HKG", "SIN"), ("SYD", "MEL")],
}
DEFAULT_SESSION_SECONDS = 24 * 3600


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def new_uuid(rng: random.Random | None = None) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4)) if rng else str(uuid.uuid4())


def new_tag(rng: random.Random | None = None) -> str:
    """The 32-hex identifiers Cloudflare uses for accounts, zones and DNS records."""
    return f"{rng.getrandbits(128):032x}" if rng else uuid.uuid4().hex


def public(doc: Doc) -> Doc:
    """A document without the simulator's bookkeeping fields (those start with an underscore)."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}


DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: str) -> float:
    """Go-style durations as Access uses them ("24h", "2h45m", "300ms"); ValueError if malformed."""
    parts = DURATION_RE.findall(value or "")
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(value)
    return sum(float(n) * DURATION_UNITS[u] for n, u in parts)


# -- tunnels and connectors ---------------------------------------------------------------------------------


def region_of(tunnel: Doc) -> str:
    name = tunnel.get("name", "")
    for region in COLO_PAIRS:
        if f"-{region}-" in f"-{name}-" or name.startswith(f"{region}-"):
            return region
    return "us" if int(hashlib.sha256(name.encode()).hexdigest(), 16) % 2 else "eu"


def make_tunnel(
    account_id: str,
    name: str,
    now: float,
    rng: random.Random | None = None,
    *,
    config_src: str = "local",
    secret: str | None = None,
) -> Doc:
    return {
        "id": new_uuid(rng),
        "account_tag": account_id,
        "name": name,
        "status": "inactive",
        "created_at": iso(now),
        "deleted_at": None,
        "conns_active_at": None,
        "conns_inactive_at": None,
        "tun_type": "cfd_tunnel",
        "remote_config": config_src == "cloudflare",
        "config_src": config_src,
        "metadata": {},
        "_secret": secret or base64.b64encode(rng.randbytes(32) if rng else os.urandom(32)).decode(),
        "_config_version": 0,
    }


def make_connector(
    tunnel: Doc,
    now: float,
    rng: random.Random,
    *,
    version: str,
    arch: str = "linux_amd64",
    origin_ip: str | None = None,
    colos: tuple[str, str] | None = None,
) -> Doc:
    connector_id = new_uuid(rng)
    colos = colos or rng.choice(COLO_PAIRS[region_of(tunnel)])
    origin_ip = origin_ip or str(ipaddress.IPv4Address(rng.randrange(0x2D000000, 0x6F000000)))
    return {
        "id": connector_id,
        "arch": arch,
        "version": version,
        "run_at": iso(now),
        "config_version": tunnel.get("_config_version", 0),
        "features": ["ha-origin", "serialized_headers", "support_datagram_v3_2", "management_logs"],
        "conns": [
            _connection(connector_id, version, colos[i % 2], origin_ip, now, rng)
            for i in range(CONNS_PER_CONNECTOR)
        ],
    }


def _connection(
    connector_id: str, version: str, colo: str, origin_ip: str, now: float, rng: random.Random
) -> Doc:
    conn_id = new_uuid(rng)
    return {
        "id": conn_id,
        "uuid": conn_id,
        "client_id": connector_id,
        "client_version": version,
        "colo_name": colo,
        "is_pending_reconnect": False,
        "opened_at": iso(now),
        "origin_ip": origin_ip,
    }


def connectors(store: Store, tunnel_id: str) -> list[Doc]:
    return store.list("connector", parent=tunnel_id)


def tunnel_status(tunnel: Doc, tunnel_connectors: list[Doc]) -> str:
    conns = [c for k in tunnel_connectors for c in k["conns"]]
    active = [c for c in conns if not c["is_pending_reconnect"]]
    if not active:
        return "inactive" if tunnel.get("conns_active_at") is None and not conns else "down"
    if len(active) < len(conns) or any(len(k["conns"]) < CONNS_PER_CONNECTOR for k in tunnel_connectors):
        return "degraded"
    return "healthy"


def refresh_tunnel(store: Store, tunnel: Doc, now: float, tunnel_connectors: list[Doc] | None = None) -> Doc:
    """Recompute status and the active/inactive timestamps after the tunnel's connectors changed."""
    if tunnel_connectors is None:
        tunnel_connectors = connectors(store, tunnel["id"])
    before, after = tunnel["status"], tunnel_status(tunnel, tunnel_connectors)
    was_serving, is_serving = before in ("healthy", "degraded"), after in ("healthy", "degraded")
    if is_serving and not was_serving:
        tunnel["conns_active_at"], tunnel["conns_inactive_at"] = iso(now), None
    elif was_serving and not is_serving:
        tunnel["conns_inactive_at"] = iso(now)
    if after != before or is_serving != was_serving:
        tunnel["status"] = after
        store.put("tunnel", tunnel, tunnel["account_tag"])
    if after != before:
        # Every status change, whatever moved it (the clock, an API call, a forced event), is notified.
        alerting.tunnel_health_changed(store, tunnel, before, after, now)
    return tunnel


def tunnel_created(store: Store, tunnel: Doc, now: float) -> None:
    alerting.tunnel_lifecycle(store, tunnel, "created", now)


def tunnel_deleted(store: Store, tunnel: Doc, now: float) -> None:
    alerting.tunnel_lifecycle(store, tunnel, "deleted", now)


def _save_connectors(store: Store, tunnel: Doc, tunnel_connectors: list[Doc], now: float) -> Doc:
    with store.write():
        for connector in tunnel_connectors:
            if connector["conns"]:
                store.put("connector", connector, tunnel["account_tag"], parent=tunnel["id"])
            else:
                store.delete("connector", connector["id"])
        return refresh_tunnel(store, tunnel, now, [k for k in tunnel_connectors if k["conns"]])


def _drop(conn: Doc, now: float) -> None:
    if not conn["is_pending_reconnect"]:
        conn["is_pending_reconnect"] = True
        conn["_dropped_at"] = now


class EventError(ValueError):
    """An event that cannot apply to the tunnel as it is (e.g. taking down a connector it does not have)."""


def connector_down(store: Store, tunnel: Doc, now: float, connector_id: str | None = None) -> Doc:
    tunnel_connectors = connectors(store, tunnel["id"])
    live = [k for k in tunnel_connectors if any(not c["is_pending_reconnect"] for c in k["conns"])]
    target = next((k for k in live if k["id"] == connector_id), None) if connector_id else (live or [None])[0]
    if target is None:
        raise EventError("the tunnel has no such running connector")
    for conn in target["conns"]:
        _drop(conn, now)
    return _save_connectors(store, tunnel, tunnel_connectors, now)


def tunnel_down(store: Store, tunnel: Doc, now: float) -> Doc:
    tunnel_connectors = connectors(store, tunnel["id"])
    for connector in tunnel_connectors:
        for conn in connector["conns"]:
            _drop(conn, now)
    return _save_connectors(store, tunnel, tunnel_connectors, now)


def degrade(store: Store, tunnel: Doc, now: float) -> Doc:
    """Drop the connections one connector holds to one of its two data centres."""
    tunnel_connectors = connectors(store, tunnel["id"])
    for connector in tunnel_connectors:
        live = [c for c in connector["conns"] if not c["is_pending_reconnect"]]
        if len(live) == len(connector["conns"]) and live:
            colo = live[0]["colo_name"]
            for conn in live:
                if conn["colo_name"] == colo:
                    _drop(conn, now)
            return _save_connectors(store, tunnel, tunnel_connectors, now)
    raise EventError("the tunnel has no fully connected connector to degrade")


def recover(
    store: Store,
    tunnel: Doc,
    now: float,
    rng: random.Random,
    *,
    replicas: int = 2,
    version: str = "2026.10.0",
) -> Doc:
    """Reconnect every dropped connection; a tunnel with no connector left starts fresh replicas."""
    tunnel_connectors = connectors(store, tunnel["id"])
    if not tunnel_connectors:
        tunnel_connectors = [make_connector(tunnel, now, rng, version=version) for _ in range(replicas)]
    for connector in tunnel_connectors:
        colos = sorted({c["colo_name"] for c in connector["conns"]}) or list(rng.choice(COLO_PAIRS["us"]))
        origin_ip = connector["conns"][0]["origin_ip"] if connector["conns"] else None
        kept = [c for c in connector["conns"] if not c["is_pending_reconnect"]]
        while len(kept) < CONNS_PER_CONNECTOR:
            kept.append(
                _connection(
                    connector["id"],
                    connector["version"],
                    colos[len(kept) % len(colos)],
                    origin_ip or "198.51.100.10",
                    now,
                    rng,
                )
            )
        connector["conns"] = kept
    return _save_connectors(store, tunnel, tunnel_connectors, now)


def forget_stale(store: Store, tunnel: Doc, now: float) -> Doc:
    """Drop connections that have been pending reconnect for longer than Cloudflare tracks them."""
    tunnel_connectors = connectors(store, tunnel["id"])
    changed = False
    for connector in tunnel_connectors:
        kept = [
            c
            for c in connector["conns"]
            if not c["is_pending_reconnect"] or now - c.get("_dropped_at", now) < PENDING_RECONNECT_SECONDS
        ]
        changed |= len(kept) != len(connector["conns"])
        connector["conns"] = kept
    return _save_connectors(store, tunnel, tunnel_connectors, now) if changed else tunnel


def remove_connectors(store: Store, tunnel: Doc, now: float, client_id: str | None = None) -> Doc:
    with store.write():
        for connector in connectors(store, tunnel["id"]):
            if client_id is None or connector["id"] == client_id:
                store.delete("connector", connector["id"])
        return refresh_tunnel(store, tunnel, now)


# -- Access: who is admitted, sessions ----------------------------------------------------------------------


def _rule_matches(store: Store, account_id: str, rule: Doc, email: str, depth: int = 0) -> bool | None:
    """True/False for rules about who the user is; None for conditions the simulator cannot judge."""
    email = email.lower()
    if "email" in rule:
        return rule["email"].get("email", "").lower() == email
    if "email_domain" in rule:
        return email.endswith("@" + rule["email_domain"].get("domain", "").lower().lstrip("@"))
    if "everyone" in rule:
        return True
    if "group" in rule and depth < 5:
        group = store.get("access_group", rule["group"].get("id", ""), account_id)
        return group is not None and rule_set_admits(store, account_id, group, email, depth + 1)
    if any(k in rule for k in ("service_token", "any_valid_service_token", "certificate", "common_name")):
        return False
    return None


def rule_set_admits(store: Store, account_id: str, rules: Doc, email: str, depth: int = 0) -> bool:
    include = [_rule_matches(store, account_id, r, email, depth) for r in rules.get("include") or []]
    exclude = [_rule_matches(store, account_id, r, email, depth) for r in rules.get("exclude") or []]
    require = [_rule_matches(store, account_id, r, email, depth) for r in rules.get("require") or []]
    return (
        any(m is True for m in include)
        and not any(m is True for m in exclude)
        and all(m is not False for m in require)
    )


def app_policies(store: Store, app: Doc) -> list[Doc]:
    """The app's policies by precedence: reusable ones as they are now, then inline ones."""
    resolved = []
    for ref in sorted(app.get("_policy_refs", []), key=lambda r: r["precedence"]):
        policy = store.get("access_policy", ref["id"], app["_account_id"])
        if policy is not None:
            resolved.append({**public(policy), "precedence": ref["precedence"]})
    return resolved + [dict(p) for p in app.get("_inline_policies", [])]


def admits(store: Store, app: Doc, email: str) -> bool:
    """First matching allow/deny policy in precedence order decides; no match means no access."""
    for policy in app_policies(store, app):
        if policy.get("decision") in ("allow", "deny") and rule_set_admits(
            store, app["_account_id"], policy, email
        ):
            return policy["decision"] == "allow"
    return False


def app_session_seconds(store: Store, app: Doc) -> float:
    try:
        return parse_duration(app.get("session_duration") or "24h")
    except ValueError:
        return DEFAULT_SESSION_SECONDS


def user_for_email(
    store: Store, account_id: str, email: str, now: float, rng: random.Random | None = None
) -> Doc:
    """Access creates a user the first time an identity is seen."""
    email = email.lower()
    for user in store.list("access_user", account_id):
        if user["email"] == email:
            return user
    user_id = new_uuid(rng)
    user = {
        "id": user_id,
        "uid": user_id,
        "seat_uid": new_uuid(rng),
        "email": email,
        "name": email.split("@")[0].replace(".", " ").title(),
        "access_seat": True,
        "gateway_seat": False,
        "active_device_count": 0,
        "last_successful_login": None,
        "created_at": iso(now),
        "updated_at": iso(now),
    }
    store.put("access_user", user, account_id)
    return user


def app_summary(app: Doc) -> Doc:
    return {
        "hostname": app.get("domain", ""),
        "name": app.get("name", ""),
        "type": app["type"],
        "uid": app["id"],
    }


def open_session(store: Store, account_id: str, user: Doc, app: Doc, now: float, rng: random.Random) -> Doc:
    """Give the user a session on the app, joining their current session if they have one."""
    sessions = store.list("access_session", account_id, parent=user["id"])
    session = sessions[0] if sessions else None
    if session is None:
        nonce = f"{rng.getrandbits(80):020x}"
        session = {
            "id": nonce,
            "user_id": user["id"],
            "email": user["email"],
            "apps": {},
            "iat": int(now),
            "expires": int(now + app_session_seconds(store, app)),
            "ip": str(ipaddress.IPv4Address(rng.randrange(0x51000000, 0x5F000000))),
            "country": rng.choice(["US", "DE", "NL", "GB", "SG", "JP", "FR"]),
            "device_id": new_uuid(rng),
        }
    session["apps"][app["id"]] = app_summary(app)
    session["expires"] = max(session["expires"], int(now + app_session_seconds(store, app)))
    with store.write():
        store.put("access_session", session, account_id, parent=user["id"])
        user["last_successful_login"] = iso(now)
        user["updated_at"] = iso(now)
        user["active_device_count"] = 1
        store.put("access_user", user, account_id)
    return session


def secret_digest(secret: str) -> str:
    """What the simulator keeps of a client secret: enough to check one presented, never the secret itself."""
    return hashlib.sha256(secret.encode()).hexdigest()


def token_secret_accepted(token: Doc, client_secret: str, now: float) -> bool:
    """Access takes a token's current secret, and its previous one until the moment the rotation set for it; a
    disabled token takes neither."""
    if not token.get("enabled", True):
        return False
    digest = secret_digest(client_secret)
    if hmac.compare_digest(digest, token.get("_secret_digest", "")):
        return True
    previous = token.get("_previous_secret") or {}
    return hmac.compare_digest(digest, previous.get("digest", "")) and now < previous.get("until", 0)


def token_admitted(
    store: Store, app: Doc, token_id: str, client_secret: str | None = None, now: float | None = None
) -> bool:
    """A request carrying this service token gets in only through a Service Auth (non_identity) policy naming it,
    while the token exists and is enabled, and (when the request's client secret is given) with a secret Access
    still takes."""
    for policy in app_policies(store, app):
        if policy.get("decision") != "non_identity":
            continue
        for rule in policy.get("include") or []:
            if rule.get("service_token", {}).get("token_id") == token_id or "any_valid_service_token" in rule:
                token = store.get("service_token", token_id, app["_account_id"])
                if token is None or not token.get("enabled", True):
                    return False
                if client_secret is None:
                    return True
                return token_secret_accepted(token, client_secret, time.time() if now is None else now)
    return False


def revoke_user(store: Store, account_id: str, email: str, now: float) -> bool:
    """End the user's sessions; False when Access knows nobody with that address (nothing to revoke)."""
    email = email.lower()
    found = False
    with store.write():
        for user in store.list("access_user", account_id):
            if user["email"] == email:
                found = True
                store.delete_children("access_session", user["id"])
                user["_revoked_at"] = now
                user["active_device_count"] = 0
                user["updated_at"] = iso(now)
                store.put("access_user", user, account_id)
    return found


def revoke_app_tokens(store: Store, account_id: str, app_id: str) -> None:
    with store.write():
        for session in store.list("access_session", account_id):
            if session["apps"].pop(app_id, None) is not None:
                if session["apps"]:
                    store.put("access_session", session, account_id, parent=session["user_id"])
                else:
                    store.delete("access_session", session["id"])


def sync_sessions(store: Store, account_id: str, now: float, rng: random.Random, login_chance: float) -> None:
    """Expire old sessions, and let admitted users sign in to applications they have no session on."""
    apps = [
        a for a in store.list("access_app", account_id) if a.get("_policy_refs") or a.get("_inline_policies")
    ]
    users = store.list("access_user", account_id)
    with store.write():
        sessions = {}
        for session in store.list("access_session", account_id):
            if session["expires"] <= now:
                store.delete("access_session", session["id"])
            else:
                sessions[session["user_id"]] = session
        for user in users:
            for app in apps:
                session = sessions.get(user["id"])
                if session and app["id"] in session["apps"]:
                    continue
                if rng.random() < login_chance and admits(store, app, user["email"]):
                    sessions[user["id"]] = open_session(store, account_id, user, app, now, rng)


# -- the clock ----------------------------------------------------------------------------------------------


def tick(store: Store, now: float, seed: int) -> list[str]:
    """One step of the living world; deterministic for a given seed and step number. Returns what happened."""
    step = store.get_meta("clock_step", 0) + 1
    store.set_meta("clock_step", step)
    rng = random.Random(f"{seed}:{step}")  # noqa: S311 - simulated events
    happened = []
    for account_id in store.accounts():
        tunnels = [
            forget_stale(store, t, now)
            if t["deleted_at"] is None and t["status"] in ("degraded", "down")
            else t
            for t in store.list("tunnel", account_id)
        ]
        live = [t for t in tunnels if t["deleted_at"] is None and t["status"] != "inactive"]
        if live:
            # Roughly one disturbance and one repair per tick keeps most of a fleet healthy while it moves.
            tunnel = rng.choice(live)
            action = rng.choices(["degrade", "connector-down", "tunnel-down", "none"], weights=[3, 3, 1, 3])[
                0
            ]
            try:
                if action == "degrade" and tunnel["status"] == "healthy":
                    degrade(store, tunnel, now)
                elif action == "connector-down" and tunnel["status"] == "healthy":
                    connector_down(store, tunnel, now)
                elif action == "tunnel-down" and tunnel["status"] == "healthy":
                    tunnel_down(store, tunnel, now)
                else:
                    action = "none"
            except EventError:
                action = "none"
            if action != "none":
                happened.append(f"{action} {tunnel['name']}")
            unhealthy = [t for t in live if t["status"] in ("degraded", "down")]
            if unhealthy and rng.random() < 0.6:
                tunnel = rng.choice(unhealthy)
                recover(store, tunnel, now, rng)
                happened.append(f"recover {tunnel['name']}")
        sync_sessions(store, account_id, now, rng, login_chance=0.2)
    return happened
