"""Faults on demand, kept in the state file so the CLI, the control endpoint and every server process agree.

A fault configuration looks like::

    {"rules": [{"endpoint": "GET /accounts/{account_id}/cfd_tunnel*", "latency_ms": 150,
                "error_rate": 0.2, "error_status": 503, "timeout_s": 0}],
     "rate_limit": {"limit": 1200, "window": 300},
     "max_per_page": {"GET /accounts/{account_id}/access/*": 2},
     "webhooks": {"drop_rate": 0.0, "delay_s": 0.0}}

`endpoint` is a shell-style pattern over the stable endpoint names that /__sim__/stats reports ("*" for all).
Every matching rule applies; latencies add up. The rate limit is Cloudflare's: 1,200 requests per 5 minutes
per token, after which every call is refused with 429 until the window ends. `max_per_page` caps the page size of
the matching lists below their own maximum (the smallest matching cap wins), so that a client's paging is exercised
by pages smaller than the ones it asked for. `webhooks` applies to notifications sent to webhook destinations:
each one is dropped with probability `drop_rate`, and the others are posted `delay_s` seconds late.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from cloudflare_sim.store import Store

DEFAULT_RATE_LIMIT = {"limit": 1200, "window": 300}
RULE_KEYS = {"endpoint", "latency_ms", "error_rate", "error_status", "timeout_s"}
DEFAULT_WEBHOOKS = {"drop_rate": 0.0, "delay_s": 0.0}


@dataclass(frozen=True)
class Effect:
    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    timeout_s: float = 0.0


def load(store: Store) -> dict[str, Any]:
    config = store.get_meta("faults") or {}
    return {
        "rules": config.get("rules", []),
        "rate_limit": {**DEFAULT_RATE_LIMIT, **config.get("rate_limit", {})},
        "max_per_page": config.get("max_per_page", {}),
        "webhooks": {**DEFAULT_WEBHOOKS, **config.get("webhooks", {})},
    }


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Normalise a configuration; ValueError with a readable reason if it makes no sense."""
    if not isinstance(config, dict):
        raise ValueError("the fault configuration must be a JSON object")
    rules = []
    for rule in config.get("rules", []):
        if not isinstance(rule, dict) or set(rule) - RULE_KEYS:
            raise ValueError(f"a rule takes only {sorted(RULE_KEYS)}")
        rule = {"endpoint": "*", **rule}
        if not 0 <= float(rule.get("error_rate", 0)) <= 1:
            raise ValueError("error_rate is a probability between 0 and 1")
        if not 500 <= int(rule.get("error_status", 503)) <= 599:
            raise ValueError("error_status must be a 5xx status")
        rules.append(rule)
    rate_limit = {**DEFAULT_RATE_LIMIT, **config.get("rate_limit", {})}
    if int(rate_limit["limit"]) < 1 or float(rate_limit["window"]) <= 0:
        raise ValueError("the rate limit needs a positive limit and window")
    max_per_page = config.get("max_per_page", {})
    if not isinstance(max_per_page, dict) or not all(
        isinstance(pattern, str) and isinstance(size, int) and size >= 1 for pattern, size in max_per_page.items()
    ):
        raise ValueError("max_per_page maps endpoint patterns to a page size of at least 1")
    webhooks = config.get("webhooks", {})
    if not isinstance(webhooks, dict) or set(webhooks) - set(DEFAULT_WEBHOOKS):
        raise ValueError(f"webhooks takes only {sorted(DEFAULT_WEBHOOKS)}")
    webhooks = {**DEFAULT_WEBHOOKS, **webhooks}
    if not 0 <= float(webhooks["drop_rate"]) <= 1:
        raise ValueError("webhooks.drop_rate is a probability between 0 and 1")
    if float(webhooks["delay_s"]) < 0:
        raise ValueError("webhooks.delay_s cannot be negative")
    return {
        "rules": rules,
        "rate_limit": {"limit": int(rate_limit["limit"]), "window": float(rate_limit["window"])},
        "max_per_page": dict(max_per_page),
        "webhooks": {"drop_rate": float(webhooks["drop_rate"]), "delay_s": float(webhooks["delay_s"])},
    }


def save(store: Store, config: dict[str, Any]) -> dict[str, Any]:
    config = validate(config)
    store.set_meta("faults", config)
    return config


def clear(store: Store) -> dict[str, Any]:
    store.delete_meta("faults")
    store.reset_rate_limits()
    return load(store)


def page_cap(config: dict[str, Any], endpoint: str | None) -> int | None:
    """The smallest page size a matching `max_per_page` pattern allows, or None when none matches."""
    caps = [
        size for pattern, size in config.get("max_per_page", {}).items() if fnmatch.fnmatchcase(endpoint or "", pattern)
    ]
    return min(caps) if caps else None


def effect_for(config: dict[str, Any], endpoint: str) -> Effect:
    latency, error_rate, error_status, timeout = 0.0, 0.0, 503, 0.0
    for rule in config["rules"]:
        if fnmatch.fnmatchcase(endpoint, rule["endpoint"]):
            latency += float(rule.get("latency_ms", 0))
            if float(rule.get("error_rate", 0)) > error_rate:
                error_rate, error_status = float(rule["error_rate"]), int(rule.get("error_status", 503))
            timeout = max(timeout, float(rule.get("timeout_s", 0)))
    return Effect(latency, error_rate, error_status, timeout)
