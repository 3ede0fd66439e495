"""Limits on self-hosted Access applications with private destinations: a required domain, at most 50
destinations; refused with 400 and a Cloudflare error envelope on create and on the PUT that replaces the app."""

from __future__ import annotations

import cloudflare
import pytest


def _private(n: int) -> list[dict]:
    return [
        {"type": "private", "cidr": f"10.60.{i // 250}.{i % 250 + 1}/32", "port_range": "443", "l4_protocol": "tcp"}
        for i in range(n)
    ]


def _refusal(excinfo) -> tuple[int, dict]:
    body = excinfo.value.response.json()
    assert body["success"] is False and body["result"] is None
    return excinfo.value.status_code, body["errors"][0]


def test_a_self_hosted_app_takes_exactly_fifty_private_destinations(cf, account_id):
    app = cf.zero_trust.access.applications.create(
        account_id=account_id,
        type="self_hosted",
        name="Fifty",
        domain="10.60.0.1/32",
        destinations=_private(50),
    )
    assert len(app.destinations) == 50 and app.domain == "10.60.0.1/32"


def test_fifty_one_destinations_are_refused_on_create(cf, account_id):
    with pytest.raises(cloudflare.BadRequestError) as excinfo:
        cf.zero_trust.access.applications.create(
            account_id=account_id, type="self_hosted", name="Too many", domain="10.60.0.1/32", destinations=_private(51)
        )
    status, error = _refusal(excinfo)
    assert status == 400 and "at most 50 destinations" in error["message"]
    assert error["source"]["pointer"] == "/destinations"
    assert cf.zero_trust.access.applications.list(account_id=account_id, name="Too many", exact=True).result == []


def test_a_self_hosted_app_without_a_domain_is_refused(cf, account_id):
    with pytest.raises(cloudflare.BadRequestError) as excinfo:
        cf.zero_trust.access.applications.create(
            account_id=account_id, type="self_hosted", name="No domain", destinations=_private(1)
        )
    status, error = _refusal(excinfo)
    assert status == 400 and "domain is required" in error["message"]


def test_the_limits_hold_on_the_put_that_replaces_an_app(cf, account_id):
    apps = cf.zero_trust.access.applications
    app = apps.create(
        account_id=account_id, type="self_hosted", name="Grows", domain="10.60.0.1/32", destinations=_private(2)
    )
    with pytest.raises(cloudflare.BadRequestError) as excinfo:
        apps.update(
            app.id, account_id=account_id, type="self_hosted", name="Grows", domain="10.60.0.1/32",
            destinations=_private(51),
        )  # fmt: skip
    assert "at most 50" in _refusal(excinfo)[1]["message"]
    with pytest.raises(cloudflare.BadRequestError) as excinfo:
        apps.update(app.id, account_id=account_id, type="self_hosted", name="Grows", destinations=_private(3))
    assert "domain is required" in _refusal(excinfo)[1]["message"]
    assert len(apps.get(app.id, account_id=account_id).destinations) == 2
    grown = apps.update(
        app.id, account_id=account_id, type="self_hosted", name="Grows", domain="10.60.0.1/32",
        destinations=_private(50),
    )  # fmt: skip
    assert len(grown.destinations) == 50


def test_other_application_types_need_no_domain(cf, account_id):
    app = cf.zero_trust.access.applications.create(
        account_id=account_id,
        type="infrastructure",
        name="SSH",
        target_criteria=[{"port": 22, "protocol": "SSH", "target_attributes": {"hostname": ["db-1"]}}],
        policies=[{"name": "ops", "decision": "allow", "include": [{"everyone": {}}]}],
    )
    assert app.name == "SSH"
