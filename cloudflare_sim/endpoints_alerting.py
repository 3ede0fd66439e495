"""Notifications (alerting v3): webhook destinations and notification policies.

Shaped as the SDK's `types/alerting/destinations/webhooks.py` and `types/alerting/policy.py`. Creating or
updating a destination posts Cloudflare's test message to its URL at once, with the secret in `cf-webhook-auth`;
unless the URL answers 2xx the destination is not saved. The secret is never returned.
"""

from __future__ import annotations

import typing
from typing import Any
from urllib.parse import urlsplit

from cloudflare.types.alerting import policy_create_params

from cloudflare_sim import alerting
from cloudflare_sim.app import Reply, Request, bad_request, not_found, route
from cloudflare_sim.store import Doc
from cloudflare_sim.world import iso, new_tag, new_uuid, public

# The alert types Cloudflare accepts are the ones the SDK's create parameters list.
ALERT_TYPES = frozenset(
    typing.get_args(
        typing.get_args(
            typing.get_type_hints(policy_create_params.PolicyCreateParams, include_extras=True)["alert_type"]
        )[0]
    )
)
MECHANISM_KINDS = ("email", "pagerduty", "webhooks")
# Filters typed as a list of one literal in the SDK; every other filter is a list of strings.
LITERAL_FILTERS = {"traffic_exclusions": ("security_events",)}
WEBHOOK_TEST_FAILED = 17001


def _text(body: dict[str, Any], name: str, limit: int = 255, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise bad_request(f"{name} is required and must be a string of at most {limit} characters", 1001, f"/{name}")
    return value


def _url(body: dict[str, Any]) -> str:
    url = _text(body, "url", 2048)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_request("url must be an http or https URL", 1001, "/url")
    return url


def _webhook(req: Request, webhook_id: str) -> Doc:
    webhook = req.store.get("alert_webhook", webhook_id, req.account_id)
    if webhook is None:
        raise not_found("Webhook", 17000)
    return webhook


def _test(req: Request, name: str, url: str, secret: str | None) -> None:
    status = alerting.post(url, alerting.test_message(name, req.now), secret)
    if status is None or not 200 <= status < 300:
        answered = "did not answer" if status is None else f"answered HTTP {status}"
        raise bad_request(
            f"Failed to save webhook destination: the test message to the URL {answered}", WEBHOOK_TEST_FAILED
        )


def _webhook_fields(req: Request) -> tuple[str, str, str | None]:
    body = req.json()
    name, url = _text(body, "name"), _url(body)
    secret = body.get("secret")
    if secret is not None and (not isinstance(secret, str) or len(secret) > 1024):
        raise bad_request("secret must be a string of at most 1024 characters", 1001, "/secret")
    return name, url, secret or None


@route("POST", "/accounts/{account_id}/alerting/v3/destinations/webhooks")
def webhook_create(req: Request, account_id: str) -> Reply:
    name, url, secret = _webhook_fields(req)
    _test(req, name, url, secret)
    webhook = {
        "id": new_tag(),
        "name": name,
        "url": url,
        "type": "generic",
        "created_at": iso(req.now),
        "last_success": None,
        "last_failure": None,
        "_secret": secret,
    }
    req.store.put("alert_webhook", webhook, account_id)
    return Reply({"id": webhook["id"]})


@route("GET", "/accounts/{account_id}/alerting/v3/destinations/webhooks")
def webhook_list(req: Request, account_id: str) -> Reply:
    return Reply([public(w) for w in req.store.list("alert_webhook", account_id)])


@route("GET", "/accounts/{account_id}/alerting/v3/destinations/webhooks/{webhook_id}")
def webhook_get(req: Request, account_id: str, webhook_id: str) -> Reply:
    return Reply(public(_webhook(req, webhook_id)))


@route("PUT", "/accounts/{account_id}/alerting/v3/destinations/webhooks/{webhook_id}")
def webhook_update(req: Request, account_id: str, webhook_id: str) -> Reply:
    webhook = _webhook(req, webhook_id)
    name, url, secret = _webhook_fields(req)
    _test(req, name, url, secret)
    req.store.put("alert_webhook", {**webhook, "name": name, "url": url, "_secret": secret}, account_id)
    return Reply({"id": webhook_id})


@route("DELETE", "/accounts/{account_id}/alerting/v3/destinations/webhooks/{webhook_id}")
def webhook_delete(req: Request, account_id: str, webhook_id: str) -> Reply:
    _webhook(req, webhook_id)
    req.store.delete("alert_webhook", webhook_id)
    return Reply(None)


# -- policies -----------------------------------------------------------------------------------------------


def _policy(req: Request, policy_id: str) -> Doc:
    policy = req.store.get("alert_policy", policy_id, req.account_id)
    if policy is None:
        raise not_found("Policy", 17000)
    return policy


def _mechanisms(req: Request, value: Any) -> dict[str, list[dict[str, str]]]:
    if not isinstance(value, dict) or set(value) - set(MECHANISM_KINDS):
        raise bad_request(f"mechanisms must be an object with {', '.join(MECHANISM_KINDS)}", 1001, "/mechanisms")
    mechanisms = {}
    for kind, items in value.items():
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in items):
            raise bad_request(f"mechanisms.{kind} must be a list of {{id}}", 1001, f"/mechanisms/{kind}")
        if kind == "webhooks":
            for item in items:
                if req.store.get("alert_webhook", item["id"], req.account_id) is None:
                    raise bad_request(f"webhook destination {item['id']} does not exist", 17002, "/mechanisms")
        mechanisms[kind] = [{"id": i["id"]} for i in items]
    if not any(mechanisms.values()):
        raise bad_request("a policy needs at least one mechanism", 17003, "/mechanisms")
    return mechanisms


def _filters(value: Any) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("filters must be an object", 1001, "/filters")
    for key, values in value.items():
        allowed = LITERAL_FILTERS.get(key)
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise bad_request(f"filters.{key} must be a list of strings", 1001, f"/filters/{key}")
        if allowed and any(v not in allowed for v in values):
            raise bad_request(f"filters.{key} takes only {', '.join(allowed)}", 1001, f"/filters/{key}")
    return dict(value)


def _policy_fields(req: Request) -> dict[str, Any]:
    body = req.json()
    alert_type = body.get("alert_type")
    if alert_type not in ALERT_TYPES:
        raise bad_request("alert_type is required and must be a known alert type", 17004, "/alert_type")
    if not isinstance(body.get("enabled"), bool):
        raise bad_request("enabled is required and must be true or false", 1001, "/enabled")
    fields = {
        "name": _text(body, "name"),
        "alert_type": alert_type,
        "enabled": body["enabled"],
        "mechanisms": _mechanisms(req, body.get("mechanisms")),
        "filters": _filters(body.get("filters")),
        "description": _text(body, "description", 1024, required=False) or "",
    }
    if body.get("alert_interval") is not None:
        fields["alert_interval"] = _text(body, "alert_interval", 32)
    return fields


@route("POST", "/accounts/{account_id}/alerting/v3/policies")
def policy_create(req: Request, account_id: str) -> Reply:
    policy = {"id": new_uuid(), **_policy_fields(req), "created": iso(req.now), "modified": iso(req.now)}
    req.store.put("alert_policy", policy, account_id)
    return Reply({"id": policy["id"]})


@route("GET", "/accounts/{account_id}/alerting/v3/policies")
def policy_list(req: Request, account_id: str) -> Reply:
    return Reply(req.store.list("alert_policy", account_id))


@route("GET", "/accounts/{account_id}/alerting/v3/policies/{policy_id}")
def policy_get(req: Request, account_id: str, policy_id: str) -> Reply:
    return Reply(_policy(req, policy_id))


@route("PUT", "/accounts/{account_id}/alerting/v3/policies/{policy_id}")
def policy_update(req: Request, account_id: str, policy_id: str) -> Reply:
    policy = _policy(req, policy_id)
    req.store.put("alert_policy", {**policy, **_policy_fields(req), "modified": iso(req.now)}, account_id)
    return Reply({"id": policy_id})


@route("DELETE", "/accounts/{account_id}/alerting/v3/policies/{policy_id}")
def policy_delete(req: Request, account_id: str, policy_id: str) -> Reply:
    _policy(req, policy_id)
    req.store.delete("alert_policy", policy_id)
    return Reply(None)
