import logging
import time

import pytest

from cloudflare_sim import faults
from integrations import cloudflare as cf
from integrations.budget import Limits, Priority, RedisBudget, SqliteBudget
from tests.workers import redis_url


def list_tunnels(client):
    return list(client.zero_trust.tunnels.cloudflared.list(account_id=cf.account_id(), per_page=1000))


def test_call_reaches_cloudflare_through_the_sdk(cloudflare_sim):
    tunnels = cf.call("tunnels.list", list_tunnels)
    assert {t.name for t in tunnels} >= {"prod-eu-west-1-core"}
    # The SDK pages until an empty page: every request it sent was counted against the budget.
    assert cf.budget().used() == cloudflare_sim.calls() == 2


def test_unknown_object_is_not_found_with_cloudflares_message(cloudflare_sim):
    with pytest.raises(cf.CloudflareNotFound) as caught:
        cf.call(
            "tunnels.get",
            lambda c: c.zero_trust.tunnels.cloudflared.get(
                "00000000-0000-4000-8000-000000000000", account_id=cf.account_id()
            ),
        )
    assert caught.value.status == 404 and caught.value.codes
    assert caught.value.message.startswith("tunnels.get: ")


def test_bad_input_is_a_permanent_error(cloudflare_sim):
    with pytest.raises(cf.CloudflareError) as caught:
        cf.call(
            "routes.create",
            lambda c: c.zero_trust.networks.routes.create(
                account_id=cf.account_id(),
                network="10.0.0.0/99",
                tunnel_id="00000000-0000-4000-8000-000000000000",
            ),
        )
    assert not isinstance(caught.value, cf.CloudflareTransient)
    assert caught.value.status == 400


def test_server_errors_are_transient(cloudflare_sim):
    faults.save(
        cloudflare_sim.store, {"rules": [{"endpoint": "GET /accounts/*/cfd_tunnel", "error_rate": 1.0}]}
    )
    with pytest.raises(cf.CloudflareTransient) as caught:
        cf.call("tunnels.list", list_tunnels)
    assert caught.value.status >= 500


def test_a_429_blocks_every_caller_until_retry_after(cloudflare_sim):
    faults.save(cloudflare_sim.store, {"rules": [], "rate_limit": {"limit": 2, "window": 2}})
    cf.call("tunnels.list", list_tunnels)  # a page and the empty page that ends the list
    with pytest.raises(cf.CloudflareTransient) as caught:
        cf.call("tunnels.list", list_tunnels)
    assert caught.value.status == 429 and 0 < caught.value.retry_after <= 2
    sent = cloudflare_sim.calls()
    # The next call, even an urgent one, waits instead of spending a request Cloudflare would refuse.
    with pytest.raises(cf.BudgetExhausted) as waiting:
        cf.call("tunnels.list", list_tunnels, priority=Priority.INTERACTIVE)
    assert 0 < waiting.value.retry_after <= caught.value.retry_after
    assert cloudflare_sim.calls() == sent
    # Once Retry-After has passed, calls go out again.
    time.sleep(waiting.value.retry_after + 0.1)
    assert {t.name for t in cf.call("tunnels.list", list_tunnels)} >= {"prod-eu-west-1-core"}
    assert cloudflare_sim.calls() == sent + 2


def test_background_work_leaves_the_reserve_for_clicks(cloudflare_sim, settings):
    settings.CLOUDFLARE_RATE_LIMIT = 40
    settings.GATEHOUSE_CLOUDFLARE_SHARE = 0.25  # 10 calls
    settings.GATEHOUSE_CLOUDFLARE_INTERACTIVE_RESERVE = 0.2  # 2 of them for clicks, and a tenth for the status list
    for _ in range(3):
        cf.call("tunnels.list", list_tunnels)  # two requests each
    with pytest.raises(cf.BudgetExhausted):
        cf.call("tunnels.list", list_tunnels)  # the seventh request is the background's last
    cf.call("tunnels.list", list_tunnels, priority=Priority.INTERACTIVE)
    with pytest.raises(cf.BudgetExhausted):
        cf.call("tunnels.list", list_tunnels, priority=Priority.INTERACTIVE)
    assert cloudflare_sim.calls() == 9
    assert len(cf.tunnels_page(1)[0]) > 0  # the status list's own slice
    assert cloudflare_sim.calls() == 10


def test_the_token_never_reaches_the_logs(cloudflare_sim, caplog):
    caplog.set_level(logging.DEBUG)
    faults.save(cloudflare_sim.store, {"rules": [], "rate_limit": {"limit": 1, "window": 300}})
    with pytest.raises(cf.CloudflareTransient):
        cf.call("tunnels.list", list_tunnels)
    assert "gatehouse-test-token" not in caplog.text


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
def budgets(request, tmp_path):
    """A clock and a factory of two handles on one budget, as two worker processes would have."""
    clock = Clock()
    if request.param == "sqlite":
        return clock, lambda limits: [SqliteBudget(tmp_path / "b.sqlite3", "acct", limits, clock=clock) for _ in "ab"]
    url = redis_url()  # skips without Redis, or fails where GATEHOUSE_REQUIRE_SERVICES=1
    name = f"test-{time.monotonic_ns()}"
    return clock, lambda limits: [RedisBudget(url, name, limits, clock=clock) for _ in "ab"]


def test_the_window_is_shared_and_slides(budgets):
    clock, make = budgets
    a, b = make(Limits(share=3, reserve=0, window=300))
    assert a.take(Priority.BACKGROUND).granted
    clock.now += 100
    assert b.take(Priority.BACKGROUND).granted
    assert a.take(Priority.BACKGROUND).granted
    refused = b.take(Priority.BACKGROUND)
    assert not refused.granted and refused.wait == pytest.approx(200)
    clock.now += 201  # the first call has left the window
    assert b.take(Priority.BACKGROUND).granted
    assert a.used() == 3


def test_a_block_stops_every_handle_until_it_ends(budgets):
    clock, make = budgets
    a, b = make(Limits(share=3, reserve=0, window=300))
    assert a.take(Priority.BACKGROUND).granted
    a.block(30)
    a.block(5)  # a shorter 429 meanwhile never shortens the block
    refused = b.take(Priority.INTERACTIVE)
    assert not refused.granted and refused.wait == pytest.approx(30)
    clock.now += 29
    refused = b.take(Priority.INTERACTIVE)
    assert not refused.granted and refused.wait == pytest.approx(1)
    assert b.blocked_for() == pytest.approx(1)
    clock.now += 1.5
    assert b.blocked_for() == 0
    assert b.take(Priority.INTERACTIVE).granted and a.take(Priority.BACKGROUND).granted
    # Calls refused during the block were never counted against the window; both 429s were.
    assert a.used() == 3 and a.rate_limited() == 2


# --- paging and the Access boundary ----------------------------------------------------------------------------


def _apps_list_calls(sim) -> int:
    return sim.stats()["endpoints"]["GET /accounts/{account_id}/access/apps"]["calls"]


def test_lists_follow_result_info_when_cloudflare_uses_smaller_pages(cloudflare_sim):
    faults.save(cloudflare_sim.store, {"max_per_page": {"GET /accounts/{account_id}/access/apps": 5}})
    apps = cf.access_apps_all()
    assert len(apps) == len({a.id for a in apps}) == 12
    # Three pages of five (the last one short); result_info said so, so no empty page was asked for.
    assert _apps_list_calls(cloudflare_sim) == 3


def test_lists_without_counts_are_read_to_an_empty_page(cloudflare_sim):
    faults.save(cloudflare_sim.store, {"max_per_page": {"GET /accounts/{account_id}/access/*": 4}})

    def without_counts(client, page):
        answer = client.zero_trust.access.applications.list(account_id=cf.account_id(), page=page, per_page=1000)
        answer.result_info = None
        return answer

    apps = cf._all_pages("access.apps.list", without_counts)
    assert len({a.id for a in apps}) == 12
    assert _apps_list_calls(cloudflare_sim) == 4


def test_access_records_are_built_once_with_their_defaults(cloudflare_sim):
    apps = {a.name: a for a in cf.access_apps_all()}
    grafana = apps["Grafana"]
    assert grafana.type == "self_hosted" and grafana.domain == "grafana.example.com"
    assert [p.name for p in grafana.policies] == ["Employees"]
    assert grafana.policies[0].include == ({"email_domain": {"domain": "example.com"}},)
    reusable = {p.id for p in cf.access_policies_all()}
    assert grafana.inline_policies(reusable) == ()
    assert grafana.references(reusable) == [{"id": grafana.policies[0].id, "precedence": 1}]
    assert set(grafana.writable) >= {"name", "type", "domain", "destinations", "session_duration"}
    assert not set(grafana.writable) & {"id", "aud", "created_at", "updated_at", "policies"}
    ssh = apps["SSH bastions"]
    assert [p.name for p in ssh.inline_policies(reusable)] == ["SRE SSH"]


def test_a_new_service_token_hides_its_secret_and_its_expiry_is_read_back(cloudflare_sim):
    created = cf.service_token_create(name="records-test", duration="24h")
    assert created.client_secret and created.client_secret not in repr(created)
    kept = cf.service_token_get(created.id)
    assert kept.expires_at is not None and kept.expires_at.tzinfo is not None
    assert not hasattr(kept, "client_secret")
    assert [t.expires_at for t in cf.service_tokens_all() if t.id == created.id] == [kept.expires_at]


def test_setting_policies_sends_back_every_field_read_and_only_references(cloudflare_sim):
    client = cf.client()
    policy = cf.access_policy_create(
        name="records-policy", decision="allow", include=[{"email": {"email": "a@b.example"}}], session_duration="8h"
    )
    made = client.zero_trust.access.applications.create(
        account_id=cf.account_id(),
        type="self_hosted",
        name="Keep my settings",
        domain="keep.example.com",
        session_duration="2h",
        app_launcher_visible=False,
        custom_deny_message="Ask the SRE team",
        tags=["payments"],
        allowed_idps=["00000000-0000-4000-8000-000000000001"],
    )
    app = cf.access_app_get(made.id)
    updated = cf.access_app_set_policies(app, [{"id": policy.id, "precedence": 1}])
    assert [p.id for p in updated.policies] == [policy.id]
    stored = cloudflare_sim.store.get("access_app", made.id)
    assert (stored["session_duration"], stored["app_launcher_visible"], stored["custom_deny_message"]) == (
        "2h",
        False,
        "Ask the SRE team",
    )
    assert stored["tags"] == ["payments"] and stored["allowed_idps"] == ["00000000-0000-4000-8000-000000000001"]
    assert stored["aud"] == made.aud
    with pytest.raises(ValueError):
        cf.access_app_set_policies(app, [{"name": "inline", "decision": "allow", "include": [{"everyone": {}}]}])


def test_domain_users_are_matched_exactly_by_address(cloudflare_sim):
    from cloudflare_sim import world

    for email in ("ana@vendor.example", "bob@vendor.example.org", "cy@sub.vendor.example", "vendor.example@x.test"):
        world.user_for_email(cloudflare_sim.store, cloudflare_sim.account_id, email, time.time())
    assert [u.email for u in cf.access_users_in_domain("vendor.example")] == ["ana@vendor.example"]


def test_revoking_someone_access_does_not_know_is_not_an_error(cloudflare_sim):
    assert cf.access_revoke_user("nobody@nowhere.example") is False
    assert cf.access_revoke_user("priya@acme-analytics.com") is True


def test_an_access_object_without_a_valid_id_is_left_out_with_a_warning(cloudflare_sim, caplog):
    store, account = cloudflare_sim.store, cloudflare_sim.account_id
    grafana = next(a for a in store.list("access_app", account) if a["name"] == "Grafana")
    store.put("access_app", {**grafana, "id": "not-a-uuid", "name": "Broken\u202egrafana"}, account)
    apps = cf.access_apps_all()
    assert len(apps) == 12 and "not-a-uuid" not in {a.id for a in apps}
    assert "left out an application without a valid id" in caplog.text
    with pytest.raises(cf.CloudflareError) as caught:
        cf.access_app_get("not-a-uuid")
    assert "an application without a valid id" in caught.value.message


def test_access_text_is_clipped_and_cleaned_once_at_the_boundary(cloudflare_sim, db):
    from vendors import services
    from vendors.models import AccessApplication

    store, account = cloudflare_sim.store, cloudflare_sim.account_id
    grafana = next(a for a in store.list("access_app", account) if a["name"] == "Grafana")
    store.put("access_app", {**grafana, "name": "Graf\u202eana\x07 " + "x" * 400}, account)
    world_user = {"email": "MIXED.Case@Vendor.Example", "name": "N\u2066ame"}
    user = next(u for u in store.list("access_user", account) if u["email"] == "priya@acme-analytics.com")
    store.put("access_user", {**user, **world_user}, account)
    app = next(a for a in cf.access_apps_all() if a.id == grafana["id"])
    assert app.name.startswith("Grafana x") and len(app.name) == 200
    (found,) = cf.access_users(search="vendor.example")
    assert (found.email, found.name) == ("mixed.case@vendor.example", "Name")
    services.access_apps_refresh()
    assert AccessApplication.objects.get(cf_id=grafana["id"]).name == app.name


def test_a_window_spent_by_clicks_and_background_reads_still_lets_the_status_list_through(budgets):
    _clock, make = budgets
    a, b = make(Limits(share=10, reserve=3, window=300, status_reserve=2))
    background = sum(a.take(Priority.BACKGROUND).granted for _ in range(10))
    interactive = sum(b.take(Priority.INTERACTIVE).granted for _ in range(10))
    assert (background, interactive) == (5, 3)
    assert [a.take(Priority.STATUS).granted for _ in range(3)] == [True, True, False]
