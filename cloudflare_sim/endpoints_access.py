"""Access: applications, reusable policies, groups, service tokens, users, their sessions and revocation."""

from __future__ import annotations

import ipaddress
import secrets
import uuid
from typing import Any

from cloudflare_sim import world
from cloudflare_sim.app import Reply, Request, bad_request, not_found, paginate, route
from cloudflare_sim.endpoints_networks import valid_hostname
from cloudflare_sim.store import Doc
from cloudflare_sim.world import iso, new_uuid, parse_duration, public

APP_TYPES = (
    "self_hosted",
    "saas",
    "ssh",
    "vnc",
    "app_launcher",
    "warp",
    "biso",
    "bookmark",
    "dash_sso",
    "infrastructure",
    "rdp",
    "mcp",
    "mcp_portal",
    "proxy_endpoint",
)
DECISIONS = ("allow", "deny", "non_identity", "bypass")
# Every rule type the SDK's AccessRule union knows, with the fields its object requires.
RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "any_valid_service_token": (),
    "auth_context": ("id", "ac_id", "identity_provider_id"),
    "auth_method": ("auth_method",),
    "azureAD": ("id", "identity_provider_id"),
    "certificate": (),
    "cloudflare_account_member": (),
    "common_name": ("common_name",),
    "device_posture": ("integration_uid",),
    "email": ("email",),
    "email_domain": ("domain",),
    "email_list": ("id",),
    "everyone": (),
    "external_evaluation": ("evaluate_url", "keys_url"),
    "geo": ("country_code",),
    "github-organization": ("identity_provider_id", "name"),
    "group": ("id",),
    "gsuite": ("email", "identity_provider_id"),
    "ip": ("ip",),
    "ip_list": ("id",),
    "linked_app_token": ("app_uid",),
    "login_method": ("id",),
    "oidc": ("claim_name", "claim_value", "identity_provider_id"),
    "okta": ("identity_provider_id", "name"),
    "saml": ("attribute_name", "attribute_value", "identity_provider_id"),
    "service_token": ("token_id",),
    "user_risk_score": ("user_risk_score",),
}
# A Service Auth (non_identity) policy never asks anyone to sign in, so rules about who a person is cannot match.
IDENTITY_RULES = frozenset(
    {
        "auth_context",
        "auth_method",
        "azureAD",
        "cloudflare_account_member",
        "email",
        "email_domain",
        "email_list",
        "everyone",
        "github-organization",
        "gsuite",
        "login_method",
        "oidc",
        "okta",
        "saml",
        "user_risk_score",
    }
)
APP_FIELDS = (
    "name",
    "domain",
    "session_duration",
    "allowed_idps",
    "auto_redirect_to_identity",
    "app_launcher_visible",
    "tags",
    "cors_headers",
    "custom_deny_message",
    "custom_deny_url",
    "enable_binding_cookie",
    "http_only_cookie_attribute",
    "logo_url",
    "options_preflight_bypass",
    "same_site_cookie_attribute",
    "service_auth_401_redirect",
    "skip_interstitial",
)
POLICY_FIELDS = (
    "name",
    "decision",
    "include",
    "exclude",
    "require",
    "session_duration",
    "approval_required",
    "approval_groups",
    "purpose_justification_required",
    "purpose_justification_prompt",
    "isolation_required",
    "mfa_config",
    "connection_rules",
)


def _duration(value: Any, pointer: str) -> str:
    try:
        parse_duration(value)
    except (ValueError, TypeError):
        raise bad_request(f"{value!r} is not a valid duration such as 24h or 30m", 12130, pointer) from None
    return value


def _rules(body: Doc, key: str, *, required: bool = False) -> list[Doc]:
    rules = body.get(key) or []
    if required and not rules:
        raise bad_request(f"{key} needs at least one rule", 12130, f"/{key}")
    if not isinstance(rules, list) or not all(isinstance(r, dict) and len(r) == 1 for r in rules):
        raise bad_request(f"every {key} rule is an object with a single rule type", 12130, f"/{key}")
    for i, rule in enumerate(rules):
        ((kind, value),) = rule.items()
        if kind not in RULE_FIELDS:
            raise bad_request(f"unknown rule type {kind!r}", 12130, f"/{key}/{i}")
        if not isinstance(value, dict) or any(value.get(name) in (None, "") for name in RULE_FIELDS[kind]):
            raise bad_request(
                f"a {kind} rule needs {', '.join(RULE_FIELDS[kind]) or 'an empty object'}", 12130, f"/{key}/{i}"
            )
        if "email" in rule and "@" not in str(rule["email"].get("email", "")):
            raise bad_request("email rules need an email address", 12130, f"/{key}")
        if "email_domain" in rule and not valid_hostname(str(rule["email_domain"].get("domain", ""))):
            raise bad_request("email_domain rules need a domain", 12130, f"/{key}")
        if "ip" in rule:
            try:
                ipaddress.ip_network(rule["ip"].get("ip"), strict=False)
            except (ValueError, TypeError):
                raise bad_request("ip rules need a CIDR", 12130, f"/{key}") from None
    return rules


def _policy_doc(body: Doc, now: float, current: Doc | None = None) -> Doc:
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        raise bad_request("name is required", 12130, "/name")
    if body.get("decision") not in DECISIONS:
        raise bad_request(f"decision must be one of {', '.join(DECISIONS)}", 12130, "/decision")
    if body["decision"] == "non_identity":
        for key in ("include", "require"):
            for i, rule in enumerate(body.get(key) or []):
                if isinstance(rule, dict) and IDENTITY_RULES & set(rule):
                    raise bad_request(
                        f"Service Auth policies cannot use identity rules such as {next(iter(rule))!r}; use "
                        "service_token, any_valid_service_token, certificate, common_name or network rules",
                        12130,
                        f"/{key}/{i}",
                    )
    doc = {
        "id": current["id"] if current else new_uuid(),
        "name": body["name"],
        "decision": body["decision"],
        "include": _rules(body, "include", required=True),
        "exclude": _rules(body, "exclude"),
        "require": _rules(body, "require"),
        "session_duration": _duration(body.get("session_duration", "24h"), "/session_duration"),
        "approval_required": bool(body.get("approval_required", False)),
        "approval_groups": body.get("approval_groups") or [],
        "purpose_justification_required": bool(body.get("purpose_justification_required", False)),
        "isolation_required": bool(body.get("isolation_required", False)),
        "created_at": current["created_at"] if current else iso(now),
        "updated_at": iso(now),
    }
    for key in ("purpose_justification_prompt", "mfa_config", "connection_rules"):
        if body.get(key) is not None:
            doc[key] = body[key]
    return doc


# -- reusable policies --------------------------------------------------------------------------------------


def get_policy(req: Request, policy_id: str) -> Doc:
    policy = req.store.get("access_policy", policy_id, req.account_id)
    if policy is None:
        raise not_found("Access policy", 12131)
    return policy


def _apps_using(req: Request, policy_id: str) -> list[Doc]:
    return [
        a
        for a in req.store.list("access_app", req.account_id)
        if any(ref["id"] == policy_id for ref in a.get("_policy_refs", []))
    ]


def _policy_reply(req: Request, policy: Doc, app_count: int | None = None) -> Doc:
    count = len(_apps_using(req, policy["id"])) if app_count is None else app_count
    return {**public(policy), "account_id": req.account_id, "reusable": True, "app_count": count}


@route("GET", "/accounts/{account_id}/access/policies")
def policy_list(req: Request, account_id: str) -> Reply:
    counts: dict[str, int] = {}
    for app in req.store.list("access_app", account_id):
        for ref in app.get("_policy_refs", []):
            counts[ref["id"]] = counts.get(ref["id"], 0) + 1
    policies = [
        _policy_reply(req, p, counts.get(p["id"], 0)) for p in req.store.list("access_policy", account_id)
    ]
    return paginate(req, policies, default_per_page=25, max_per_page=1000)


@route("POST", "/accounts/{account_id}/access/policies")
def policy_create(req: Request, account_id: str) -> Reply:
    policy = _policy_doc(req.json(), req.now)
    req.store.put("access_policy", policy, account_id)
    return Reply(_policy_reply(req, policy, 0), status=201)


@route("GET", "/accounts/{account_id}/access/policies/{policy_id}")
def policy_get(req: Request, account_id: str, policy_id: str) -> Reply:
    return Reply(_policy_reply(req, get_policy(req, policy_id)))


@route("PUT", "/accounts/{account_id}/access/policies/{policy_id}")
def policy_update(req: Request, account_id: str, policy_id: str) -> Reply:
    policy = _policy_doc(req.json(), req.now, get_policy(req, policy_id))
    req.store.put("access_policy", policy, account_id)
    return Reply(_policy_reply(req, policy))


@route("DELETE", "/accounts/{account_id}/access/policies/{policy_id}")
def policy_delete(req: Request, account_id: str, policy_id: str) -> Reply:
    get_policy(req, policy_id)
    if using := _apps_using(req, policy_id):
        raise bad_request(
            f"The policy is used by {len(using)} application(s); remove it from them first", 12132
        )
    req.store.delete("access_policy", policy_id)
    return Reply({"id": policy_id}, status=202)


# -- applications -------------------------------------------------------------------------------------------


def _destinations(req: Request, body: Doc) -> list[Doc]:
    destinations = body.get("destinations") or []
    if not isinstance(destinations, list):
        raise bad_request("destinations must be a list", 12130, "/destinations")
    for i, dest in enumerate(destinations):
        pointer = f"/destinations/{i}"
        kind = dest.get("type", "public") if isinstance(dest, dict) else None
        if kind == "public":
            host = str(dest.get("uri", "")).split("/")[0]
            if not valid_hostname(host, wildcard=True):
                raise bad_request(f"invalid public destination {dest.get('uri')!r}", 12130, pointer + "/uri")
        elif kind == "private":
            if not dest.get("cidr") and not dest.get("hostname"):
                raise bad_request("a private destination needs a cidr or a hostname", 12130, pointer)
            if dest.get("cidr"):
                try:
                    ipaddress.ip_network(dest["cidr"])
                except ValueError:
                    raise bad_request(
                        f"{dest['cidr']!r} is not a valid CIDR", 12130, pointer + "/cidr"
                    ) from None
            if dest.get("hostname") and not valid_hostname(dest["hostname"], wildcard=True):
                raise bad_request(f"invalid hostname {dest['hostname']!r}", 12130, pointer + "/hostname")
            if dest.get("l4_protocol") not in (None, "tcp", "udp"):
                raise bad_request("l4_protocol must be tcp or udp", 12130, pointer + "/l4_protocol")
            if dest.get("port_range") is not None and not _valid_ports(str(dest["port_range"])):
                raise bad_request(
                    f"invalid port_range {dest['port_range']!r}", 12130, pointer + "/port_range"
                )
            if dest.get("vnet_id"):
                vnet = req.store.get("vnet", dest["vnet_id"], req.account_id)
                if vnet is None or vnet["deleted_at"] is not None:
                    raise bad_request(
                        f"virtual network {dest['vnet_id']} not found", 12130, pointer + "/vnet_id"
                    )
        else:
            raise bad_request("destination type must be public or private", 12130, pointer + "/type")
    return destinations


# Cloudflare's documented maximum of destinations on one application.
MAX_APP_DESTINATIONS = 50


def _self_hosted_limits(body: Doc, current: Doc | None = None) -> None:
    """A self-hosted application must name its domain (the SDK types it Required) and may carry at most
    MAX_APP_DESTINATIONS destinations; both on create and on the PUT that replaces the application."""
    if (body.get("type") or (current or {}).get("type")) != "self_hosted":
        return
    if not isinstance(body.get("domain"), str) or not body["domain"].strip():
        raise bad_request("domain is required for a self-hosted application", 12130, "/domain")
    destinations = body.get("destinations")
    if isinstance(destinations, list) and len(destinations) > MAX_APP_DESTINATIONS:
        raise bad_request(
            f"an application can have at most {MAX_APP_DESTINATIONS} destinations, got {len(destinations)}",
            12130,
            "/destinations",
        )


def _valid_ports(value: str) -> bool:
    parts = value.split("-")
    if len(parts) > 2 or not all(p.isdigit() and 1 <= int(p) <= 65535 for p in parts):
        return False
    return len(parts) == 1 or int(parts[0]) <= int(parts[1])


def _app_policies(req: Request, body: Doc, app_type: str) -> tuple[list[Doc], list[Doc]]:
    """Split an app's `policies` into references to reusable policies and inline ones."""
    refs, inline = [], []
    for i, item in enumerate(body.get("policies") or []):
        if isinstance(item, str):
            item = {"id": item}
        if not isinstance(item, dict):
            raise bad_request("policies items are ids or policy objects", 12130, f"/policies/{i}")
        if "decision" in item or "include" in item:
            policy = _policy_doc(item, req.now)
            if app_type == "infrastructure" and policy["decision"] != "allow":
                raise bad_request(
                    "Infrastructure application policies can only use the Allow action",
                    12130,
                    f"/policies/{i}",
                )
            inline.append({**policy, "precedence": item.get("precedence", i + 1)})
            continue
        if req.store.get("access_policy", str(item.get("id")), req.account_id) is None:
            raise bad_request(f"Access policy {item.get('id')} not found", 12131, f"/policies/{i}")
        refs.append({"id": item["id"], "precedence": item.get("precedence", i + 1)})
    if refs and inline:
        raise bad_request("Reusable and inline policies are mutually exclusive", 12130, "/policies")
    return refs, inline


def _app_doc(req: Request, body: Doc, current: Doc | None = None) -> Doc:
    app_type = body.get("type") or (current or {}).get("type")
    if app_type not in APP_TYPES:
        raise bad_request(f"type must be one of {', '.join(APP_TYPES)}", 12130, "/type")
    doc: Doc = {
        "id": current["id"] if current else new_uuid(),
        "aud": current["aud"] if current else secrets.token_hex(32),
        "type": app_type,
        "created_at": current["created_at"] if current else iso(req.now),
        "updated_at": iso(req.now),
        "_account_id": req.account_id,
    }
    for key in APP_FIELDS:
        if body.get(key) is not None:
            doc[key] = body[key]
    if not isinstance(doc.get("name"), str) or not doc["name"].strip():
        raise bad_request("name is required", 12130, "/name")
    doc["session_duration"] = _duration(doc.get("session_duration", "24h"), "/session_duration")
    if app_type == "infrastructure":
        criteria = body.get("target_criteria")
        if not isinstance(criteria, list) or not criteria:
            raise bad_request(
                "target_criteria is required for infrastructure applications", 12130, "/target_criteria"
            )
        for i, criterion in enumerate(criteria):
            if criterion.get("protocol") != "SSH" or not isinstance(criterion.get("port"), int):
                raise bad_request(
                    "each target criterion needs an integer port and protocol SSH",
                    12130,
                    f"/target_criteria/{i}",
                )
        doc["target_criteria"] = criteria
        # Infrastructure apps carry no domain or app-level session; policies set the session length.
        doc.pop("domain", None)
        doc.pop("session_duration", None)
    elif app_type == "self_hosted":
        doc["destinations"] = _destinations(req, body)
        if not doc["destinations"] and doc.get("domain"):
            doc["destinations"] = [{"type": "public", "uri": doc["domain"]}]
        if not doc["destinations"]:
            raise bad_request(
                "a self-hosted application needs a domain or destinations", 12130, "/destinations"
            )
        first = doc["destinations"][0]
        # Cloudflare reports a private-only app's first destination as its domain.
        doc["domain"] = doc.get("domain") or first.get("uri") or first.get("hostname") or first.get("cidr")
        if not valid_hostname(doc["domain"].split("/")[0], wildcard=True) and first.get("type") == "public":
            raise bad_request(f"invalid domain {doc['domain']!r}", 12130, "/domain")
    doc["_policy_refs"], doc["_inline_policies"] = _app_policies(req, body, app_type)
    return doc


def _app_reply(req: Request, app: Doc) -> Doc:
    return {**public(app), "policies": world.app_policies(req.store, app)}


def get_app(req: Request, app_id: str) -> Doc:
    app = req.store.get("access_app", app_id, req.account_id)
    if app is None:
        raise not_found("Access application", 12133)
    return app


@route("GET", "/accounts/{account_id}/access/apps")
def app_list(req: Request, account_id: str) -> Reply:
    apps = req.store.list("access_app", account_id)
    exact = req.q_bool("exact") is True
    for key in ("name", "domain", "aud"):
        if (value := req.q(key)) is not None:
            apps = [
                a
                for a in apps
                if (
                    a.get(key) == value
                    if exact or key == "aud"
                    else value.lower() in str(a.get(key, "")).lower()
                )
            ]
    if (search := req.q("search")) is not None:
        apps = [a for a in apps if search.lower() in f"{a.get('name', '')} {a.get('domain', '')}".lower()]
    return paginate(req, [_app_reply(req, a) for a in apps], default_per_page=25, max_per_page=1000)


@route("POST", "/accounts/{account_id}/access/apps")
def app_create(req: Request, account_id: str) -> Reply:
    _self_hosted_limits(req.json())
    app = _app_doc(req, req.json())
    req.store.put("access_app", app, account_id)
    return Reply(_app_reply(req, app), status=201)


@route("GET", "/accounts/{account_id}/access/apps/{app_id}")
def app_get(req: Request, account_id: str, app_id: str) -> Reply:
    return Reply(_app_reply(req, get_app(req, app_id)))


@route("PUT", "/accounts/{account_id}/access/apps/{app_id}")
def app_update(req: Request, account_id: str, app_id: str) -> Reply:
    _self_hosted_limits(req.json(), get_app(req, app_id))
    app = _app_doc(req, req.json(), get_app(req, app_id))
    req.store.put("access_app", app, account_id)
    return Reply(_app_reply(req, app))


@route("DELETE", "/accounts/{account_id}/access/apps/{app_id}")
def app_delete(req: Request, account_id: str, app_id: str) -> Reply:
    get_app(req, app_id)
    with req.store.write():
        world.revoke_app_tokens(req.store, account_id, app_id)
        req.store.delete("access_app", app_id)
    return Reply({"id": app_id}, status=202)


@route("POST", "/accounts/{account_id}/access/apps/{app_id}/revoke_tokens")
def app_revoke_tokens(req: Request, account_id: str, app_id: str) -> Reply:
    get_app(req, app_id)
    world.revoke_app_tokens(req.store, account_id, app_id)
    return Reply(None, status=202)


# -- groups -------------------------------------------------------------------------------------------------


def get_group(req: Request, group_id: str) -> Doc:
    group = req.store.get("access_group", group_id, req.account_id)
    if group is None:
        raise not_found("Access group", 12134)
    return group


def _group_doc(req: Request, body: Doc, current: Doc | None = None) -> Doc:
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        raise bad_request("name is required", 12130, "/name")
    # is_default is accepted but not echoed: the SDK types it as a rule list, so echoing the real boolean
    # would fail strict response validation.
    return {
        "id": current["id"] if current else new_uuid(),
        "name": body["name"],
        "include": _rules(body, "include", required=True),
        "exclude": _rules(body, "exclude"),
        "require": _rules(body, "require"),
        "created_at": current["created_at"] if current else iso(req.now),
        "updated_at": iso(req.now),
    }


@route("GET", "/accounts/{account_id}/access/groups")
def group_list(req: Request, account_id: str) -> Reply:
    groups = req.store.list("access_group", account_id)
    if (name := req.q("name")) is not None:
        groups = [g for g in groups if g["name"] == name]
    if (search := req.q("search")) is not None:
        groups = [g for g in groups if search.lower() in g["name"].lower()]
    return paginate(req, groups, default_per_page=25, max_per_page=1000)


@route("POST", "/accounts/{account_id}/access/groups")
def group_create(req: Request, account_id: str) -> Reply:
    group = _group_doc(req, req.json())
    req.store.put("access_group", group, account_id)
    return Reply(group, status=201)


@route("GET", "/accounts/{account_id}/access/groups/{group_id}")
def group_get(req: Request, account_id: str, group_id: str) -> Reply:
    return Reply(get_group(req, group_id))


@route("PUT", "/accounts/{account_id}/access/groups/{group_id}")
def group_update(req: Request, account_id: str, group_id: str) -> Reply:
    group = _group_doc(req, req.json(), get_group(req, group_id))
    req.store.put("access_group", group, account_id)
    return Reply(group)


@route("DELETE", "/accounts/{account_id}/access/groups/{group_id}")
def group_delete(req: Request, account_id: str, group_id: str) -> Reply:
    get_group(req, group_id)
    req.store.delete("access_group", group_id)
    return Reply({"id": group_id})


# -- service tokens -----------------------------------------------------------------------------------------


def get_service_token(req: Request, token_id: str) -> Doc:
    token = req.store.get("service_token", token_id, req.account_id)
    if token is None:
        raise not_found("Service token", 12135)
    return token


def _token_duration(value: Any) -> float:
    if value == "forever":
        return 100 * 365 * 86400
    try:
        return parse_duration(value)
    except (ValueError, TypeError):
        raise bad_request(f"{value!r} is not a valid duration such as 8760h", 12130, "/duration") from None


# What creating or rotating a token answers (ServiceTokenCreateResponse): no expiry, which only list and get carry.
SECRET_REPLY_FIELDS = ("id", "client_id", "name", "duration", "enabled")


def _token_reply(token: Doc, secret: str | None = None) -> Doc:
    if secret is None:
        return public(token)
    return {**{key: token[key] for key in SECRET_REPLY_FIELDS}, "client_secret": secret}


@route("GET", "/accounts/{account_id}/access/service_tokens")
def service_token_list(req: Request, account_id: str) -> Reply:
    tokens = req.store.list("service_token", account_id)
    if (name := req.q("name")) is not None:
        tokens = [t for t in tokens if t["name"] == name]
    if (search := req.q("search")) is not None:
        tokens = [t for t in tokens if search.lower() in t["name"].lower()]
    return paginate(req, [_token_reply(t) for t in tokens], default_per_page=25, max_per_page=1000)


@route("POST", "/accounts/{account_id}/access/service_tokens")
def service_token_create(req: Request, account_id: str) -> Reply:
    body = req.json()
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        raise bad_request("name is required", 12130, "/name")
    duration = body.get("duration", "8760h")
    seconds = _token_duration(duration)
    secret = secrets.token_hex(32)
    token = {
        "id": new_uuid(),
        "client_id": f"{uuid.uuid4().hex}.access",
        "name": body["name"],
        "duration": duration,
        "enabled": True,
        "expires_at": iso(req.now + seconds),
        "created_at": iso(req.now),
        "updated_at": iso(req.now),
        "last_seen_at": None,
        "_secret_digest": world.secret_digest(secret),
    }
    req.store.put("service_token", token, account_id)
    return Reply(_token_reply(token, secret), status=201)


@route("GET", "/accounts/{account_id}/access/service_tokens/{token_id}")
def service_token_get(req: Request, account_id: str, token_id: str) -> Reply:
    return Reply(_token_reply(get_service_token(req, token_id)))


@route("PUT", "/accounts/{account_id}/access/service_tokens/{token_id}")
def service_token_update(req: Request, account_id: str, token_id: str) -> Reply:
    token = get_service_token(req, token_id)
    body = req.json()
    if "name" in body:
        token["name"] = body["name"]
    if "duration" in body:
        token["expires_at"] = iso(req.now + _token_duration(body["duration"]))
        token["duration"] = body["duration"]
    token["updated_at"] = iso(req.now)
    req.store.put("service_token", token, account_id)
    return Reply(_token_reply(token))


@route("DELETE", "/accounts/{account_id}/access/service_tokens/{token_id}")
def service_token_delete(req: Request, account_id: str, token_id: str) -> Reply:
    token = get_service_token(req, token_id)
    req.store.delete("service_token", token_id)
    return Reply(_token_reply(token))


@route("POST", "/accounts/{account_id}/access/service_tokens/{token_id}/refresh")
def service_token_refresh(req: Request, account_id: str, token_id: str) -> Reply:
    token = get_service_token(req, token_id)
    token["expires_at"] = iso(req.now + _token_duration(token["duration"]))
    token["updated_at"] = iso(req.now)
    req.store.put("service_token", token, account_id)
    return Reply(_token_reply(token))


@route("POST", "/accounts/{account_id}/access/service_tokens/{token_id}/rotate")
def service_token_rotate(req: Request, account_id: str, token_id: str) -> Reply:
    token = get_service_token(req, token_id)
    until = req.json().get("previous_client_secret_expires_at")
    if until is None:
        # Without it, Cloudflare expires the previous secret at once.
        previous_until = req.now
    else:
        try:
            previous_until = world.parse_time(until)
        except (AttributeError, TypeError, ValueError):
            raise bad_request(
                "previous_client_secret_expires_at must be an RFC 3339 timestamp",
                12130,
                "/previous_client_secret_expires_at",
            ) from None
    secret = secrets.token_hex(32)
    token["_previous_secret"] = {"digest": token.get("_secret_digest", ""), "until": previous_until}
    token["_secret_digest"] = world.secret_digest(secret)
    token["updated_at"] = iso(req.now)
    req.store.put("service_token", token, account_id)
    return Reply(_token_reply(token, secret))


# -- users, sessions, revocation ----------------------------------------------------------------------------


def get_user(req: Request, user_id: str) -> Doc:
    user = req.store.get("access_user", user_id, req.account_id)
    if user is None:
        raise not_found("User", 12136)
    return user


@route("GET", "/accounts/{account_id}/access/users")
def user_list(req: Request, account_id: str) -> Reply:
    users = req.store.list("access_user", account_id)
    if (email := req.q("email")) is not None:
        users = [u for u in users if u["email"] == email.lower()]
    if (name := req.q("name")) is not None:
        users = [u for u in users if u["name"] == name]
    if (search := req.q("search")) is not None:
        users = [u for u in users if search.lower() in f"{u['email']} {u['name']}".lower()]
    return paginate(req, [public(u) for u in users], default_per_page=25, max_per_page=1000)


@route("GET", "/accounts/{account_id}/access/users/{user_id}")
def user_get(req: Request, account_id: str, user_id: str) -> Reply:
    return Reply(public(get_user(req, user_id)))


def _live_sessions(req: Request, user_id: str) -> list[Doc]:
    return [
        s for s in req.store.list("access_session", req.account_id, parent=user_id) if s["expires"] > req.now
    ]


@route("GET", "/accounts/{account_id}/access/users/{user_id}/active_sessions")
def session_list(req: Request, account_id: str, user_id: str) -> Reply:
    get_user(req, user_id)
    return Reply(
        [
            {
                "name": s["id"],
                "expiration": s["expires"],
                "metadata": {
                    "apps": s["apps"],
                    "expires": s["expires"],
                    "iat": s["iat"],
                    "nonce": s["id"],
                    "ttl": s["expires"] - s["iat"],
                },
            }
            for s in _live_sessions(req, user_id)
        ]
    )


@route("GET", "/accounts/{account_id}/access/users/{user_id}/active_sessions/{nonce}")
def session_get(req: Request, account_id: str, user_id: str, nonce: str) -> Reply:
    user = get_user(req, user_id)
    for session in _live_sessions(req, user_id):
        if session["id"] == nonce:
            return Reply(
                {
                    "account_id": account_id,
                    "auth_status": "NONE",
                    "email": user["email"],
                    "ip": session["ip"],
                    "geo": {"country": session["country"]},
                    "idp": {"id": "google-workspace", "type": "google-apps"},
                    "device_id": session["device_id"],
                    "device_sessions": {},
                    "devicePosture": {},
                    "is_gateway": False,
                    "is_warp": False,
                    "isActive": True,
                    "user_uuid": user["id"],
                    "iat": session["iat"],
                    "version": 2,
                }
            )
    raise not_found("Session", 12137)


@route("POST", "/accounts/{account_id}/access/organizations/revoke_user")
def revoke_user(req: Request, account_id: str) -> Reply:
    body = req.json()
    email = body.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise bad_request("email is required", 12130, "/email")
    return Reply(world.revoke_user(req.store, account_id, email, req.now))
