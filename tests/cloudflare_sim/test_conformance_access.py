"""Access applications, policies, groups, service tokens, users, sessions and revocation through the SDK."""

from __future__ import annotations

import random

import cloudflare
import pytest

from cloudflare_sim import world


def _vendor_policy(cf, account_id, domain="vendor.example"):
    return cf.zero_trust.access.policies.create(
        account_id=account_id,
        name=f"Vendor {domain}",
        decision="allow",
        include=[{"email_domain": {"domain": domain}}],
        session_duration="8h",
    )


def test_policy_lifecycle_and_validation(cf, account_id):
    policies = cf.zero_trust.access.policies
    policy = policies.create(
        account_id=account_id,
        name="Contractors",
        decision="allow",
        include=[{"email": {"email": "a@contractor.example"}}],
        exclude=[{"email": {"email": "b@contractor.example"}}],
        session_duration="4h",
    )
    assert (
        policy.reusable is True
        and policy.app_count == 0
        and policy.exclude[0].email.email == "b@contractor.example"
    )
    updated = policies.update(
        policy.id,
        account_id=account_id,
        name="Contractors",
        decision="allow",
        include=[{"email_domain": {"domain": "contractor.example"}}],
    )
    assert updated.include[0].email_domain.domain == "contractor.example"
    assert policy.id in {p.id for p in policies.list(account_id=account_id)}
    assert policies.get(policy.id, account_id=account_id).name == "Contractors"
    for bad in (
        {"decision": "maybe", "include": [{"everyone": {}}]},
        {"decision": "allow", "include": []},
        {"decision": "allow", "include": [{"everyone": {}}], "session_duration": "forever-ish"},
    ):
        with pytest.raises(cloudflare.BadRequestError):
            policies.create(account_id=account_id, name="bad", **bad)
    assert policies.delete(policy.id, account_id=account_id).id == policy.id
    with pytest.raises(cloudflare.NotFoundError):
        policies.get(policy.id, account_id=account_id)


def test_self_hosted_app_with_public_and_private_destinations(cf, account_id, demo):
    apps = cf.zero_trust.access.applications
    policy = _vendor_policy(cf, account_id)
    vnet = next(v["id"] for v in demo["virtual_networks"] if v["name"] == "prod-vpc")
    app = apps.create(
        account_id=account_id,
        type="self_hosted",
        name="Vendor Postgres",
        domain="pg-admin.example.com",
        session_duration="8h",
        destinations=[
            {
                "type": "private",
                "cidr": "10.50.0.7/32",
                "port_range": "5432",
                "l4_protocol": "tcp",
                "vnet_id": vnet,
            },
            {"type": "public", "uri": "pg-admin.example.com"},
        ],
        policies=[{"id": policy.id, "precedence": 1}],
    )
    assert type(app).__name__ == "SelfHostedApplication" and len(app.aud) == 64
    assert app.destinations[0].port_range == "5432" and app.destinations[1].uri == "pg-admin.example.com"
    assert [(p.id, p.precedence, p.decision) for p in app.policies] == [(policy.id, 1, "allow")]
    assert cf.zero_trust.access.policies.get(policy.id, account_id=account_id).app_count == 1
    with pytest.raises(cloudflare.BadRequestError):
        cf.zero_trust.access.policies.delete(policy.id, account_id=account_id)
    listed = apps.list(account_id=account_id, name="Vendor Postgres", exact=True).result
    assert [a.id for a in listed] == [app.id]
    assert apps.get(app.id, account_id=account_id).name == "Vendor Postgres"
    renamed = apps.update(
        app.id,
        account_id=account_id,
        type="self_hosted",
        name="Vendor Postgres (RO)",
        domain="pg-admin.example.com",
        policies=[policy.id],
    )
    assert renamed.name == "Vendor Postgres (RO)" and renamed.aud == app.aud
    assert apps.delete(app.id, account_id=account_id).id == app.id
    with pytest.raises(cloudflare.NotFoundError):
        apps.get(app.id, account_id=account_id)


def test_app_input_is_validated(cf, account_id):
    apps = cf.zero_trust.access.applications
    for destinations in (
        [{"type": "private", "cidr": "10.0.0.300/32"}],
        [{"type": "private", "cidr": "10.0.0.3/32", "port_range": "70000"}],
        [{"type": "public", "uri": "not a host"}],
    ):
        with pytest.raises(cloudflare.BadRequestError):
            apps.create(
                account_id=account_id,
                type="self_hosted",
                name="bad",
                domain="ok.example.com",
                destinations=destinations,
            )
    with pytest.raises(cloudflare.BadRequestError):
        apps.create(
            account_id=account_id,
            type="self_hosted",
            name="bad",
            domain="ok.example.com",
            policies=[{"id": "00000000-0000-4000-8000-000000000000"}],
        )


def test_infrastructure_app_for_ssh(cf, account_id):
    app = cf.zero_trust.access.applications.create(
        account_id=account_id,
        type="infrastructure",
        name="Vendor SSH",
        target_criteria=[{"port": 22, "protocol": "SSH", "target_attributes": {"hostname": ["db-1"]}}],
        policies=[
            {
                "name": "vendor ssh",
                "decision": "allow",
                "include": [{"email": {"email": "v@vendor.example"}}],
                "connection_rules": {"ssh": {"usernames": ["ubuntu"]}},
            }
        ],
    )
    # The SDK's response union has several all-optional members and may pick any of them; the data is intact.
    body = app.to_dict()
    assert body["type"] == "infrastructure" and body["target_criteria"][0]["port"] == 22
    assert body["policies"][0]["connection_rules"]["ssh"]["usernames"] == ["ubuntu"]


def test_app_list_pages_until_empty(cf, account_id, app):
    app.store.reset_stats("start")
    names = [a.name for a in cf.zero_trust.access.applications.list(account_id=account_id, per_page=5)]
    assert len(names) == 12
    assert app.store.stats()["endpoints"]["GET /accounts/{account_id}/access/apps"]["calls"] == 4


def test_groups_lifecycle(cf, account_id):
    groups = cf.zero_trust.access.groups
    group = groups.create(
        account_id=account_id, name="Vendors", include=[{"email_domain": {"domain": "v.example"}}]
    )
    assert group.include[0].email_domain.domain == "v.example"
    assert [g.id for g in groups.list(account_id=account_id, name="Vendors")] == [group.id]
    assert (
        groups.update(group.id, account_id=account_id, name="Vendors 2", include=[{"everyone": {}}]).name
        == "Vendors 2"
    )
    assert groups.get(group.id, account_id=account_id).name == "Vendors 2"
    assert groups.delete(group.id, account_id=account_id).id == group.id
    with pytest.raises(cloudflare.NotFoundError):
        groups.get(group.id, account_id=account_id)


def test_service_token_secret_only_on_create_and_rotate(cf, app, clock, account_id):
    tokens = cf.zero_trust.access.service_tokens
    created = tokens.create(account_id=account_id, name="acme-sync", duration="24h")
    assert created.client_secret and created.client_id.endswith(".access")
    fetched = tokens.get(created.id, account_id=account_id)
    assert "client_secret" not in fetched.model_dump() and fetched.model_extra.get("client_secret") is None
    assert all(getattr(t, "client_secret", None) is None for t in tokens.list(account_id=account_id))
    clock.advance(3600)
    refreshed = tokens.refresh(created.id, account_id=account_id)
    assert (refreshed.expires_at - fetched.expires_at).total_seconds() == pytest.approx(3600, abs=1)
    rotated = tokens.rotate(created.id, account_id=account_id)
    assert rotated.client_secret and rotated.client_secret != created.client_secret
    assert (
        created.client_secret
        not in app.store.conn.execute("SELECT group_concat(doc) FROM objects").fetchone()[0]
    )
    assert tokens.update(created.id, account_id=account_id, name="acme-sync-2").name == "acme-sync-2"
    assert tokens.delete(created.id, account_id=account_id).id == created.id
    with pytest.raises(cloudflare.NotFoundError):
        tokens.get(created.id, account_id=account_id)


def test_users_list_filters_by_email(cf, account_id):
    users = list(cf.zero_trust.access.users.list(account_id=account_id, per_page=5))
    assert len(users) == 21
    found = cf.zero_trust.access.users.list(account_id=account_id, email="priya@acme-analytics.com").result
    assert [u.email for u in found] == ["priya@acme-analytics.com"]


def _admit_and_login(cf, app, clock, account_id, email="ext@vendor.example"):
    policy = _vendor_policy(cf, account_id)
    target = cf.zero_trust.access.applications.create(
        account_id=account_id,
        type="self_hosted",
        name="Vendor portal",
        domain="portal.example.com",
        policies=[{"id": policy.id, "precedence": 1}],
    )
    world.user_for_email(app.store, account_id, email, clock())
    world.sync_sessions(app.store, account_id, clock(), random.Random(1), login_chance=1.0)
    user = cf.zero_trust.access.users.list(account_id=account_id, email=email).result[0]
    return policy, target, user


def test_admitted_users_have_sessions_on_the_apps_their_policy_guards(cf, app, clock, account_id):
    _policy, target, user = _admit_and_login(cf, app, clock, account_id)
    sessions = cf.zero_trust.access.users.active_sessions.list(user.id, account_id=account_id).result
    assert len(sessions) == 1 and set(sessions[0].metadata.apps) == {target.id}
    detail = cf.zero_trust.access.users.active_sessions.get(
        sessions[0].metadata.nonce, account_id=account_id, user_id=user.id
    )
    assert detail.email == "ext@vendor.example" and detail.is_active is True
    outsider = world.user_for_email(app.store, account_id, "someone@elsewhere.example", clock())
    world.sync_sessions(app.store, account_id, clock(), random.Random(2), login_chance=1.0)
    assert cf.zero_trust.access.users.active_sessions.list(outsider["id"], account_id=account_id).result == []


def test_revoked_user_whom_no_policy_admits_stays_gone(cf, app, clock, account_id):
    policy, _target, user = _admit_and_login(cf, app, clock, account_id)
    cf.zero_trust.access.policies.update(
        policy.id,
        account_id=account_id,
        name=policy.name,
        decision="allow",
        include=[{"email_domain": {"domain": "other.example"}}],
    )
    assert cf.zero_trust.organizations.revoke_users(account_id=account_id, email=user.email) is True
    for step in range(5):
        clock.advance(60)
        world.sync_sessions(app.store, account_id, clock(), random.Random(step), login_chance=1.0)
    assert cf.zero_trust.access.users.active_sessions.list(user.id, account_id=account_id).result == []


def test_revoked_user_still_admitted_may_sign_in_again(cf, app, clock, account_id):
    _policy, _target, user = _admit_and_login(cf, app, clock, account_id)
    cf.zero_trust.organizations.revoke_users(account_id=account_id, email=user.email)
    assert cf.zero_trust.access.users.active_sessions.list(user.id, account_id=account_id).result == []
    world.sync_sessions(app.store, account_id, clock(), random.Random(3), login_chance=1.0)
    assert len(cf.zero_trust.access.users.active_sessions.list(user.id, account_id=account_id).result) == 1


def test_revoke_tokens_ends_sessions_on_that_app_only(cf, app, clock, account_id):
    _policy, target, user = _admit_and_login(cf, app, clock, account_id)
    employee = cf.zero_trust.access.users.list(account_id=account_id, email="ana.silva@example.com").result[0]
    employee_apps = cf.zero_trust.access.users.active_sessions.list(employee.id, account_id=account_id).result
    assert employee_apps
    response = cf.zero_trust.access.applications.with_raw_response.revoke_tokens(
        target.id, account_id=account_id
    )
    assert response.status_code == 202 and response.parse() is None
    assert cf.zero_trust.access.users.active_sessions.list(user.id, account_id=account_id).result == []
    still = cf.zero_trust.access.users.active_sessions.list(employee.id, account_id=account_id).result
    assert [s.metadata.apps.keys() for s in still] == [s.metadata.apps.keys() for s in employee_apps]


def test_revoke_user_needs_an_email(cf, account_id):
    with pytest.raises(cloudflare.BadRequestError):
        cf.zero_trust.organizations.revoke_users(account_id=account_id, email="")


def _token_app(cf, account_id, decision, include, name="Machine API"):
    policy = cf.zero_trust.access.policies.create(
        account_id=account_id, name=f"{name} policy", decision=decision, include=include, session_duration="8h"
    )
    return cf.zero_trust.access.applications.create(
        account_id=account_id,
        type="self_hosted",
        name=name,
        domain=f"{name.lower().replace(' ', '-')}.example.com",
        policies=[{"id": policy.id, "precedence": 1}],
    )


def test_a_service_token_is_admitted_only_by_a_service_auth_policy_naming_it(cf, app, account_id):
    tokens = cf.zero_trust.access.service_tokens
    named = tokens.create(account_id=account_id, name="sync job", duration="24h")
    other = tokens.create(account_id=account_id, name="other job", duration="24h")
    service_auth = _token_app(cf, account_id, "non_identity", [{"service_token": {"token_id": named.id}}])
    people_only = _token_app(cf, account_id, "allow", [{"email_domain": {"domain": "vendor.example"}}], "People")
    any_token = _token_app(cf, account_id, "non_identity", [{"any_valid_service_token": {}}], "Any token")

    def admitted(target, token):
        return world.token_admitted(app.store, app.store.get("access_app", target.id), token.id)

    assert admitted(service_auth, named) and not admitted(service_auth, other)
    assert not admitted(people_only, named)
    assert admitted(any_token, named) and admitted(any_token, other)
    tokens.delete(named.id, account_id=account_id)
    assert not admitted(service_auth, named)


def test_policy_rules_are_checked_like_cloudflare(cf, account_id):
    policies = cf.zero_trust.access.policies
    token = cf.zero_trust.access.service_tokens.create(account_id=account_id, name="t")
    for decision, include in (
        ("non_identity", [{"email": {"email": "a@vendor.example"}}]),
        ("non_identity", [{"service_token": {"token_id": token.id}}, {"everyone": {}}]),
        ("non_identity", [{"service_token": {}}]),
        ("allow", [{"favourite_colour": {"colour": "blue"}}]),
        ("allow", [{"email_domain": {}}]),
        ("admit", [{"service_token": {"token_id": token.id}}]),
    ):
        with pytest.raises(cloudflare.BadRequestError) as refused:
            policies.create(account_id=account_id, name="bad", decision=decision, include=include)
        assert refused.value.status_code == 400 and refused.value.body["errors"][0]["code"] == 12130
    service_auth = policies.create(
        account_id=account_id,
        name="machines",
        decision="non_identity",
        include=[{"service_token": {"token_id": token.id}}, {"any_valid_service_token": {}}],
        require=[{"ip": {"ip": "203.0.113.0/24"}}],
    )
    assert service_auth.decision == "non_identity" and service_auth.include[0].service_token.token_id == token.id


def test_reusable_and_inline_policies_in_one_list_are_refused(cf, account_id):
    apps = cf.zero_trust.access.applications
    reusable = _vendor_policy(cf, account_id)
    inline = {"name": "legacy", "decision": "allow", "include": [{"email": {"email": "a@corp.example"}}]}
    legacy = apps.create(
        account_id=account_id, type="self_hosted", name="Legacy", domain="legacy.example.com", policies=[inline]
    )
    for body in (
        [{"id": reusable.id, "precedence": 1}, {**inline, "precedence": 2}],
        [reusable.id, inline],
    ):
        with pytest.raises(cloudflare.BadRequestError) as refused:
            apps.update(
                legacy.id,
                account_id=account_id,
                type="self_hosted",
                name="Legacy",
                domain="legacy.example.com",
                policies=body,
            )
        assert refused.value.body["errors"][0]["message"] == "Reusable and inline policies are mutually exclusive"
    assert [p.name for p in apps.get(legacy.id, account_id=account_id).policies] == ["legacy"]
    replaced = apps.update(
        legacy.id,
        account_id=account_id,
        type="self_hosted",
        name="Legacy",
        domain="legacy.example.com",
        policies=[{"id": reusable.id, "precedence": 1}],
    )
    assert [p.id for p in replaced.policies] == [reusable.id]


def test_creating_a_service_token_answers_no_expiry_which_get_and_list_carry(cf, account_id):
    tokens = cf.zero_trust.access.service_tokens
    raw = tokens.with_raw_response.create(account_id=account_id, name="expiry", duration="48h")
    created = raw.parse()
    answered = set(raw.http_response.json()["result"])
    assert answered == {"id", "client_id", "client_secret", "name", "duration", "enabled"}
    assert created.client_secret and "expires_at" not in created.model_dump(exclude_unset=True)
    fetched = tokens.get(created.id, account_id=account_id)
    assert fetched.expires_at is not None
    assert [t.expires_at for t in tokens.list(account_id=account_id, name="expiry")] == [fetched.expires_at]
    rotated = tokens.with_raw_response.rotate(created.id, account_id=account_id)
    assert "expires_at" not in rotated.http_response.json()["result"]


def test_revoke_user_answers_false_when_there_is_nothing_to_revoke(cf, account_id):
    revoke = cf.zero_trust.organizations.revoke_users
    assert revoke(account_id=account_id, email="nobody@nowhere.example") is False
    assert revoke(account_id=account_id, email="priya@acme-analytics.com") is True


def test_page_size_is_capped_per_endpoint_by_the_fault_configuration(cf, account_id, app):
    from cloudflare_sim import faults

    faults.save(app.store, {"max_per_page": {"GET /accounts/{account_id}/access/apps": 5}})
    first = cf.zero_trust.access.applications.list(account_id=account_id, per_page=1000)
    assert len(first.result) == 5
    assert first.result_info.per_page == 5 and first.result_info.total_pages == 3
    assert len(list(cf.zero_trust.access.applications.list(account_id=account_id, per_page=1000))) == 12
    # Other lists keep their own maximum.
    assert len(cf.zero_trust.access.users.list(account_id=account_id, per_page=1000).result) == 21
    with pytest.raises(ValueError):
        faults.save(app.store, {"max_per_page": {"*": 0}})


def test_creating_a_policy_answers_201_and_deleting_one_or_an_application_202(cf, account_id):
    policies = cf.zero_trust.access.policies
    created = policies.with_raw_response.create(
        account_id=account_id, name="statuses", decision="allow", include=[{"everyone": {}}]
    )
    assert created.status_code == 201
    app = cf.zero_trust.access.applications.create(
        account_id=account_id, type="self_hosted", name="Statuses", domain="statuses.example.com"
    )
    assert cf.zero_trust.access.applications.with_raw_response.delete(app.id, account_id=account_id).status_code == 202
    assert policies.with_raw_response.delete(created.parse().id, account_id=account_id).status_code == 202


def test_rotating_a_token_stops_its_old_secret_at_once_unless_told_when(cf, app, clock, account_id):
    tokens = cf.zero_trust.access.service_tokens
    created = tokens.create(account_id=account_id, name="rotated job", duration="24h")
    target = _token_app(cf, account_id, "non_identity", [{"service_token": {"token_id": created.id}}], "Rotated")
    stored_app = app.store.get("access_app", target.id)

    def admitted(secret):
        return world.token_admitted(app.store, stored_app, created.id, client_secret=secret, now=clock())

    assert admitted(created.client_secret) and not admitted("not-the-secret")
    rotated = tokens.rotate(created.id, account_id=account_id)
    assert admitted(rotated.client_secret) and not admitted(created.client_secret)

    # A grace period keeps the previous secret working until the moment given, and no longer.
    clock.advance(1)
    from datetime import UTC, datetime

    grace = tokens.rotate(
        created.id,
        account_id=account_id,
        previous_client_secret_expires_at=datetime.fromtimestamp(clock() + 600, UTC),
    )
    assert admitted(grace.client_secret) and admitted(rotated.client_secret)
    clock.advance(601)
    assert admitted(grace.client_secret) and not admitted(rotated.client_secret)


def test_rotate_refuses_a_previous_secret_expiry_that_is_not_a_timestamp(cf, account_id):
    tokens = cf.zero_trust.access.service_tokens
    created = tokens.create(account_id=account_id, name="bad rotate", duration="24h")
    with pytest.raises(cloudflare.BadRequestError) as refused:
        tokens.rotate(created.id, account_id=account_id, previous_client_secret_expires_at="next tuesday")
    assert refused.value.body["errors"][0]["code"] == 12130
    with pytest.raises(cloudflare.NotFoundError):
        tokens.rotate("6d0b5c3e-8d0e-4f57-9a39-7d2d2a0f0c11", account_id=account_id)


def test_a_disabled_token_is_not_admitted(cf, app, account_id):
    tokens = cf.zero_trust.access.service_tokens
    created = tokens.create(account_id=account_id, name="disabled job", duration="24h")
    target = _token_app(cf, account_id, "non_identity", [{"service_token": {"token_id": created.id}}], "Disabled")
    token = app.store.get("service_token", created.id, account_id)
    app.store.put("service_token", {**token, "enabled": False}, account_id)
    assert not world.token_admitted(app.store, app.store.get("access_app", target.id), created.id)


def test_refresh_extends_a_token_by_its_duration_from_now_and_answers_the_token(cf, clock, account_id):
    tokens = cf.zero_trust.access.service_tokens
    created = tokens.create(account_id=account_id, name="refreshed job", duration="48h")
    before = tokens.get(created.id, account_id=account_id).expires_at
    clock.advance(7200)
    raw = tokens.with_raw_response.refresh(created.id, account_id=account_id)
    refreshed = raw.parse()
    assert "client_secret" not in raw.http_response.json()["result"]
    assert (refreshed.expires_at - before).total_seconds() == pytest.approx(7200, abs=1)
    with pytest.raises(cloudflare.NotFoundError):
        tokens.refresh("6d0b5c3e-8d0e-4f57-9a39-7d2d2a0f0c11", account_id=account_id)
