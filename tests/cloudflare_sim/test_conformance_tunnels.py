"""Tunnels, connectors, configurations, routes, virtual networks, zones and DNS through the official SDK."""

from __future__ import annotations

import base64
import json

import cloudflare
import pytest

from cloudflare_sim import faults, world
from tests.cloudflare_sim.conftest import sdk_client


def test_tunnel_list_pages_until_an_empty_page(cf, app, account_id):
    app.store.reset_stats("start")
    names = [t.name for t in cf.zero_trust.tunnels.cloudflared.list(account_id=account_id, per_page=5)]
    assert len(names) == len(set(names)) == 24
    # 24 tunnels at 5 a page: pages 1-5 carry them, page 6 is empty and stops the iterator.
    assert app.store.stats()["endpoints"]["GET /accounts/{account_id}/cfd_tunnel"]["calls"] == 6


def test_tunnel_list_filters_by_name_status_and_prefix(cf, account_id):
    tunnels = cf.zero_trust.tunnels.cloudflared
    by_name = tunnels.list(account_id=account_id, name="prod-eu-west-1-core").result
    assert [t.name for t in by_name] == ["prod-eu-west-1-core"]
    degraded = tunnels.list(account_id=account_id, status="degraded", per_page=100).result
    assert degraded and all(t.status == "degraded" for t in degraded)
    staging = tunnels.list(account_id=account_id, include_prefix="staging-", per_page=100).result
    assert staging and all(t.name.startswith("staging-") for t in staging)
    not_prod = tunnels.list(account_id=account_id, exclude_prefix="prod-", per_page=100).result
    assert not any(t.name.startswith("prod-") for t in not_prod)
    with pytest.raises(cloudflare.BadRequestError):
        tunnels.list(account_id=account_id, status="sleepy")


def test_tunnel_list_and_get_carry_no_connections(cf, account_id):
    tunnel = cf.zero_trust.tunnels.cloudflared.list(account_id=account_id, status="healthy").result[0]
    assert tunnel.connections is None
    assert cf.zero_trust.tunnels.cloudflared.get(tunnel.id, account_id=account_id).connections is None


def test_deleted_tunnels_are_hidden_unless_asked_for(cf, account_id):
    tunnels = cf.zero_trust.tunnels.cloudflared
    created = tunnels.create(account_id=account_id, name="short-lived")
    tunnels.delete(created.id, account_id=account_id)
    assert not tunnels.list(account_id=account_id, name="short-lived").result
    deleted = tunnels.list(account_id=account_id, is_deleted=True).result
    assert [t.id for t in deleted] == [created.id] and deleted[0].deleted_at is not None
    # The name is free again once the old tunnel is deleted.
    assert tunnels.create(account_id=account_id, name="short-lived").id != created.id


def test_tunnel_create_edit_and_token(cf, account_id):
    tunnels = cf.zero_trust.tunnels.cloudflared
    secret = base64.b64encode(b"s" * 32).decode()
    tunnel = tunnels.create(
        account_id=account_id, name="vendor-acme", config_src="cloudflare", tunnel_secret=secret
    )
    assert (tunnel.status, tunnel.remote_config, tunnel.conns_active_at) == ("inactive", True, None)
    assert tunnels.edit(tunnel.id, account_id=account_id, name="vendor-acme-2").name == "vendor-acme-2"
    token = json.loads(base64.b64decode(tunnels.token.get(tunnel.id, account_id=account_id)))
    assert token == {"a": account_id, "t": tunnel.id, "s": secret}


def test_duplicate_tunnel_name_is_a_conflict(cf, account_id):
    with pytest.raises(cloudflare.ConflictError) as error:
        cf.zero_trust.tunnels.cloudflared.create(account_id=account_id, name="prod-eu-west-1-core")
    assert error.value.status_code == 409 and error.value.errors[0].code == 1013


def test_invalid_tunnel_input_is_a_bad_request(cf, account_id):
    with pytest.raises(cloudflare.BadRequestError):
        cf.zero_trust.tunnels.cloudflared.create(account_id=account_id, name="x", tunnel_secret="c2hvcnQ=")
    with pytest.raises(cloudflare.BadRequestError):
        cf.zero_trust.tunnels.cloudflared.create(account_id=account_id, name="")


def test_unknown_ids_are_404_with_an_error_body(cf, account_id):
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(cloudflare.NotFoundError) as error:
        cf.zero_trust.tunnels.cloudflared.get(missing, account_id=account_id)
    assert error.value.body["success"] is False and error.value.errors[0].message == "Tunnel not found"
    for call in (
        lambda: cf.zero_trust.networks.routes.get(missing, account_id=account_id),
        lambda: cf.zero_trust.networks.virtual_networks.get(missing, account_id=account_id),
        lambda: cf.zero_trust.access.applications.get(missing, account_id=account_id),
        lambda: cf.zero_trust.access.policies.get(missing, account_id=account_id),
        lambda: cf.zero_trust.access.service_tokens.get(missing, account_id=account_id),
        lambda: cf.zones.get(zone_id="0" * 32),
    ):
        with pytest.raises(cloudflare.NotFoundError):
            call()


def test_a_tunnel_with_live_connections_cannot_be_deleted(cf, app, clock, account_id):
    tunnels = cf.zero_trust.tunnels.cloudflared
    tunnel = tunnels.list(account_id=account_id, status="healthy").result[0]
    with pytest.raises(cloudflare.BadRequestError):
        tunnels.delete(tunnel.id, account_id=account_id)
    world.tunnel_down(app.store, app.store.get("tunnel", tunnel.id), clock())
    tunnels.connections.delete(tunnel.id, account_id=account_id)
    assert tunnels.connections.get(tunnel.id, account_id=account_id).result == []
    assert tunnels.delete(tunnel.id, account_id=account_id).deleted_at is not None


def test_connections_list_connectors_and_stale_ones_can_be_removed(cf, app, clock, account_id):
    tunnels = cf.zero_trust.tunnels.cloudflared
    tunnel = tunnels.list(account_id=account_id, name="prod-eu-west-1-core").result[0]
    connectors = tunnels.connections.get(tunnel.id, account_id=account_id).result
    assert len(connectors) == 3
    for connector in connectors:
        assert connector.version and connector.arch and len(connector.conns) == 4
        assert len({c.colo_name for c in connector.conns}) == 2
        assert all(c.client_id == connector.id and not c.is_pending_reconnect for c in connector.conns)
    stale = connectors[0].id
    world.connector_down(app.store, app.store.get("tunnel", tunnel.id), clock(), stale)
    assert tunnels.get(tunnel.id, account_id=account_id).status == "degraded"
    tunnels.connections.delete(tunnel.id, account_id=account_id, client_id=stale)
    remaining = tunnels.connections.get(tunnel.id, account_id=account_id).result
    assert stale not in {c.id for c in remaining} and len(remaining) == 2
    assert tunnels.get(tunnel.id, account_id=account_id).status == "healthy"
    assert (
        tunnels.connectors.get(remaining[0].id, account_id=account_id, tunnel_id=tunnel.id).id
        == remaining[0].id
    )


def test_configuration_put_bumps_the_version_and_reads_back(cf, account_id):
    configurations = cf.zero_trust.tunnels.cloudflared.configurations
    tunnel = cf.zero_trust.tunnels.cloudflared.create(account_id=account_id, name="cfg")
    assert configurations.get(tunnel.id, account_id=account_id).version == 0
    ingress = [
        {
            "hostname": "app.example.com",
            "service": "http://localhost:8000",
            "origin_request": {"no_tls_verify": True},
        },
        {"hostname": "*", "service": "http_status:404"},
    ]
    first = configurations.update(tunnel.id, account_id=account_id, config={"ingress": ingress})
    second = configurations.update(tunnel.id, account_id=account_id, config={"ingress": ingress[1:]})
    assert (first.version, second.version) == (1, 2)
    got = configurations.get(tunnel.id, account_id=account_id)
    assert got.version == 2 and got.source == "cloudflare" and got.config.ingress[0].hostname == "*"
    assert cf.zero_trust.tunnels.cloudflared.get(tunnel.id, account_id=account_id).config_src == "cloudflare"


def test_configuration_rules_are_validated(cf, account_id):
    configurations = cf.zero_trust.tunnels.cloudflared.configurations
    tunnel = cf.zero_trust.tunnels.cloudflared.create(account_id=account_id, name="cfg-bad")
    for ingress in (
        [{"hostname": "app.example.com", "service": "http://localhost:8000"}],  # no catch-all last
        [{"hostname": "bad host!", "service": "http://x:1"}, {"service": "http_status:404"}],
        [{"hostname": "app.example.com", "service": "ftp://x"}, {"service": "http_status:404"}],
    ):
        with pytest.raises(cloudflare.BadRequestError):
            configurations.update(tunnel.id, account_id=account_id, config={"ingress": ingress})


def test_catch_all_without_hostname_is_stored_as_sent_and_fails_strict_parsing(cf, app, account_id):
    """The SDK types ingress hostname as required; a catch-all sent without one comes back without one."""
    tunnel = cf.zero_trust.tunnels.cloudflared.create(account_id=account_id, name="cfg-catch-all")
    configurations = cf.zero_trust.tunnels.cloudflared.configurations
    with pytest.raises(cloudflare.APIResponseValidationError):
        configurations.update(
            tunnel.id, account_id=account_id, config={"ingress": [{"service": "http_status:404"}]}
        )
    lenient = sdk_client(app)
    lenient._strict_response_validation = False
    got = lenient.zero_trust.tunnels.cloudflared.configurations.get(tunnel.id, account_id=account_id)
    assert got.version == 1 and got.config.ingress[0].hostname is None


def test_routes_create_filter_and_look_up_by_ip(cf, account_id, demo):
    routes = cf.zero_trust.networks.routes
    tunnel = cf.zero_trust.tunnels.cloudflared.list(
        account_id=account_id, name="corp-us-east-1-office"
    ).result[0]
    vnet = next(v["id"] for v in demo["virtual_networks"] if v["name"] == "prod-vpc")
    wide = routes.create(account_id=account_id, network="172.16.0.0/16", tunnel_id=tunnel.id, comment="wide")
    narrow = routes.create(
        account_id=account_id, network="172.16.5.0/24", tunnel_id=tunnel.id, virtual_network_id=vnet
    )
    default_vnet = next(v["id"] for v in demo["virtual_networks"] if v["is_default_network"])
    assert wide.virtual_network_id == default_vnet
    inside = {r.id for r in routes.list(account_id=account_id, network_subset="172.16.0.0/12")}
    assert inside == {wide.id, narrow.id}
    containing = {r.id for r in routes.list(account_id=account_id, network_superset="172.16.5.0/24")}
    assert containing == {wide.id, narrow.id}
    assert {r.id for r in routes.list(account_id=account_id, network_superset="172.16.9.0/24")} == {wide.id}
    by_vnet = routes.list(account_id=account_id, virtual_network_id=vnet, per_page=1000).result
    assert narrow.id in {r.id for r in by_vnet} and all(r.virtual_network_id == vnet for r in by_vnet)
    listed = routes.list(account_id=account_id, tunnel_id=tunnel.id, comment="wide").result
    assert [(r.id, r.tunnel_name, r.virtual_network_name) for r in listed] == [
        (wide.id, tunnel.name, "default")
    ]
    assert routes.ips.get("172.16.5.9", account_id=account_id).id == wide.id
    assert routes.ips.get("172.16.5.9", account_id=account_id, virtual_network_id=vnet).id == narrow.id
    with pytest.raises(cloudflare.NotFoundError):
        routes.ips.get("8.8.8.8", account_id=account_id)


def test_route_edit_delete_and_deleted_routes_hidden(cf, account_id):
    routes = cf.zero_trust.networks.routes
    tunnel = cf.zero_trust.tunnels.cloudflared.list(account_id=account_id).result[0]
    route = routes.create(account_id=account_id, network="172.20.0.0/24", tunnel_id=tunnel.id)
    assert routes.edit(route.id, account_id=account_id, comment="db subnet").comment == "db subnet"
    assert routes.get(route.id, account_id=account_id).comment == "db subnet"
    routes.delete(route.id, account_id=account_id)
    assert route.id not in {r.id for r in routes.list(account_id=account_id, per_page=1000)}
    assert route.id in {r.id for r in routes.list(account_id=account_id, is_deleted=True)}


def test_route_validation_bad_cidr_unknown_tunnel_and_duplicates(cf, account_id):
    routes = cf.zero_trust.networks.routes
    tunnel = cf.zero_trust.tunnels.cloudflared.list(account_id=account_id).result[0]
    for network in ("10.0.0.0/33", "not-a-network", "10.0.0.1/24"):
        with pytest.raises(cloudflare.BadRequestError) as error:
            routes.create(account_id=account_id, network=network, tunnel_id=tunnel.id)
        assert error.value.errors[0].code == 1016
    with pytest.raises(cloudflare.BadRequestError):
        routes.create(
            account_id=account_id, network="172.30.0.0/24", tunnel_id="00000000-0000-4000-8000-000000000000"
        )
    routes.create(account_id=account_id, network="172.30.0.0/24", tunnel_id=tunnel.id)
    with pytest.raises(cloudflare.ConflictError):
        routes.create(account_id=account_id, network="172.30.0.0/24", tunnel_id=tunnel.id)


def test_virtual_networks_lifecycle(cf, account_id):
    vnets = cf.zero_trust.networks.virtual_networks
    created = vnets.create(account_id=account_id, name="partner-net", comment="partners")
    assert created.is_default_network is False
    assert [v.id for v in vnets.list(account_id=account_id, name="partner-net").result] == [created.id]
    assert vnets.edit(created.id, account_id=account_id, comment="vendors").comment == "vendors"
    with pytest.raises(cloudflare.ConflictError):
        vnets.create(account_id=account_id, name="partner-net")
    default = vnets.list(account_id=account_id, is_default_network=True).result
    assert len(default) == 1
    with pytest.raises(cloudflare.BadRequestError):
        vnets.delete(default[0].id, account_id=account_id)
    assert vnets.delete(created.id, account_id=account_id).deleted_at is not None
    assert created.id not in {v.id for v in vnets.list(account_id=account_id).result}
    assert created.id in {v.id for v in vnets.list(account_id=account_id, is_deleted=True).result}


def test_zones_list_and_get(cf, demo, account_id):
    zones = list(cf.zones.list(account={"id": account_id}))
    assert sorted(z.name for z in zones) == ["example.com", "example.io"]
    assert cf.zones.get(zone_id=zones[0].id).name == zones[0].name
    assert [z.name for z in cf.zones.list(name="example.io").result] == ["example.io"]


def test_dns_records_lifecycle_and_filters(cf, demo):
    zone_id = next(z["id"] for z in demo["zones"] if z["name"] == "example.com")
    records = cf.dns.records
    tunnel_host = "00000000-0000-4000-8000-000000000001.cfargotunnel.com"
    created = records.create(
        zone_id=zone_id, type="CNAME", name="new-app.example.com", content=tunnel_host, proxied=True, ttl=1
    )
    assert created.proxied and created.proxiable and created.name == "new-app.example.com"
    found = records.list(zone_id=zone_id, name={"exact": "new-app.example.com"}, type="CNAME").result
    assert [r.id for r in found] == [created.id]
    assert all(r.type == "CNAME" for r in records.list(zone_id=zone_id, type="CNAME"))
    edited = records.edit(
        created.id, zone_id=zone_id, type="CNAME", name="new-app", content="other.example.com", ttl=300
    )
    assert (edited.name, edited.content, edited.ttl) == ("new-app.example.com", "other.example.com", 300)
    updated = records.update(
        created.id, zone_id=zone_id, type="A", name="new-app.example.com", content="192.0.2.10", ttl=1
    )
    assert (updated.type, records.get(created.id, zone_id=zone_id).content) == ("A", "192.0.2.10")
    assert records.delete(created.id, zone_id=zone_id).id == created.id
    with pytest.raises(cloudflare.NotFoundError):
        records.get(created.id, zone_id=zone_id)


def test_dns_record_validation(cf, demo):
    zone_id = demo["zones"][0]["id"]
    records = cf.dns.records
    with pytest.raises(cloudflare.BadRequestError):
        records.create(zone_id=zone_id, type="CNAME", name="bad_host!", content="x.example.com", ttl=1)
    with pytest.raises(cloudflare.BadRequestError):
        records.create(zone_id=zone_id, type="A", name="a", content="999.1.1.1", ttl=1)
    records.create(zone_id=zone_id, type="CNAME", name="taken", content="x.example.com", ttl=1)
    with pytest.raises(cloudflare.BadRequestError) as error:
        records.create(zone_id=zone_id, type="A", name="taken", content="192.0.2.1", ttl=1)
    assert error.value.errors[0].code == 81053


def test_wrong_or_missing_token_is_refused(app, account_id):
    with pytest.raises(cloudflare.PermissionDeniedError) as error:
        sdk_client(app, token="wrong").zero_trust.tunnels.cloudflared.list(account_id=account_id)
    assert error.value.errors[0].code == 10000
    response = sdk_client(app)._client.get("http://sim.test/client/v4/accounts/" + account_id + "/cfd_tunnel")
    assert response.status_code == 401 and response.json()["success"] is False


def test_unknown_account_and_unknown_path(cf):
    with pytest.raises(cloudflare.PermissionDeniedError):
        cf.zero_trust.tunnels.cloudflared.list(account_id="f" * 32)
    with pytest.raises(cloudflare.NotFoundError) as error:
        cf.get("/nothing/here", cast_to=object)
    assert error.value.errors[0].code == 7000


WHOLE_CONFIG = {
    "originRequest": {"connectTimeout": 10, "noTLSVerify": False},
    "warp-routing": {"enabled": True},
    "x-admin-note": ["kept as sent"],
    "ingress": [
        {
            "hostname": "app.example.com",
            "service": "http://localhost:8000",
            "path": "/api/*",
            "originRequest": {
                "httpHostHeader": "app.internal",
                "access": {"required": True, "teamName": "t", "audTag": ["a"]},
            },
            "x-rule-note": 1,
        },
        {"hostname": "*", "service": "http_status:404"},
    ],
}


def test_configuration_reads_back_whole_and_a_put_replaces_all_of_it(cf, account_id):
    """GET returns every key the last PUT sent, in Cloudflare's own names; a PUT without a key removes it."""
    tunnels = cf.zero_trust.tunnels.cloudflared
    tunnel = tunnels.create(account_id=account_id, name="cfg-whole", config_src="cloudflare")
    # extra_body sends the configuration as written; the typed `config=` would rename keys it knows.
    tunnels.configurations.update(tunnel.id, account_id=account_id, extra_body={"config": WHOLE_CONFIG})
    got = tunnels.configurations.get(tunnel.id, account_id=account_id)
    assert got.version == 1 and got.config.to_dict(mode="json") == WHOLE_CONFIG
    assert got.config.origin_request.connect_timeout == 10 and got.config.ingress[0].path == "/api/*"
    only_ingress = {"ingress": WHOLE_CONFIG["ingress"][1:]}
    replaced = tunnels.configurations.update(tunnel.id, account_id=account_id, extra_body={"config": only_ingress})
    assert replaced.version == 2
    assert tunnels.configurations.get(tunnel.id, account_id=account_id).config.to_dict(mode="json") == only_ingress


CATCH_ALL = {"hostname": "*", "service": "http_status:404"}


@pytest.mark.parametrize(
    "config,pointer",
    [
        ({**WHOLE_CONFIG, "originRequest": "fast"}, "/config/originRequest"),
        (
            {"ingress": [{"hostname": "a.example.com", "service": "http://a", "originRequest": []}, CATCH_ALL]},
            "/config/ingress/0/originRequest",
        ),
        (
            {"ingress": [{"hostname": "a.example.com", "service": "http://a", "path": 5}, CATCH_ALL]},
            "/config/ingress/0/path",
        ),
    ],
)
def test_configuration_origin_request_and_path_have_their_types(cf, account_id, config, pointer):
    tunnels = cf.zero_trust.tunnels.cloudflared
    tunnel = tunnels.create(account_id=account_id, name="cfg-types", config_src="cloudflare")
    with pytest.raises(cloudflare.BadRequestError) as error:
        tunnels.configurations.update(tunnel.id, account_id=account_id, extra_body={"config": config})
    assert error.value.errors[0].code == 1055 and error.value.errors[0].source.pointer == pointer
    assert tunnels.configurations.get(tunnel.id, account_id=account_id).version == 0


def test_tunnel_list_serves_no_more_than_its_page_size_whatever_was_asked(cf, app, account_id):
    faults.save(app.store, {"max_per_page": {"GET /accounts/{account_id}/cfd_tunnel": 5}})
    page = cf.zero_trust.tunnels.cloudflared.list(account_id=account_id, per_page=1000)
    assert len(page.result) == 5
    assert (page.result_info.per_page, page.result_info.total_count) == (5, 24)


def test_deleting_a_tunnel_deletes_its_routes_and_a_later_route_delete_is_404(cf, app, clock, account_id):
    tunnels, routes = cf.zero_trust.tunnels.cloudflared, cf.zero_trust.networks.routes
    tunnel = tunnels.create(account_id=account_id, name="short-lived-routed")
    route = routes.create(account_id=account_id, network="172.31.9.0/24", tunnel_id=tunnel.id)
    tunnels.delete(tunnel.id, account_id=account_id)
    assert route.id not in {r.id for r in routes.list(account_id=account_id, tunnel_id=tunnel.id).result}
    with pytest.raises(cloudflare.NotFoundError):
        routes.delete(route.id, account_id=account_id)


def test_removing_an_unknown_connector_is_404(cf, account_id):
    tunnels = cf.zero_trust.tunnels.cloudflared
    tunnel = tunnels.list(account_id=account_id, status="healthy").result[0]
    with pytest.raises(cloudflare.NotFoundError) as error:
        tunnels.connections.delete(tunnel.id, account_id=account_id, client_id="00000000-0000-4000-8000-000000000000")
    assert error.value.errors[0].code == 1004


def test_a_new_secret_changes_the_token_and_a_short_one_is_refused(cf, account_id):
    tunnels = cf.zero_trust.tunnels.cloudflared
    tunnel = tunnels.create(account_id=account_id, name="rotating", config_src="cloudflare")
    before = tunnels.token.get(tunnel.id, account_id=account_id)
    secret = base64.b64encode(b"n" * 32).decode()
    assert tunnels.edit(tunnel.id, account_id=account_id, tunnel_secret=secret).id == tunnel.id
    after = tunnels.token.get(tunnel.id, account_id=account_id)
    assert after != before and json.loads(base64.b64decode(after))["s"] == secret
    with pytest.raises(cloudflare.BadRequestError) as error:
        tunnels.edit(tunnel.id, account_id=account_id, tunnel_secret=base64.b64encode(b"x" * 8).decode())
    assert error.value.errors[0].code == 1006


def test_a_virtual_network_cannot_take_a_name_in_use_nor_be_deleted_with_routes(cf, account_id):
    vnets, routes = cf.zero_trust.networks.virtual_networks, cf.zero_trust.networks.routes
    first = vnets.create(account_id=account_id, name="net-one")
    second = vnets.create(account_id=account_id, name="net-two")
    with pytest.raises(cloudflare.ConflictError) as error:
        vnets.edit(second.id, account_id=account_id, name="net-one")
    assert error.value.status_code == 409 and error.value.errors[0].code == 1020
    assert vnets.edit(second.id, account_id=account_id, name="net-three").name == "net-three"
    tunnel = cf.zero_trust.tunnels.cloudflared.list(account_id=account_id, status="healthy").result[0]
    route = routes.create(
        account_id=account_id, network="172.31.10.0/24", tunnel_id=tunnel.id, virtual_network_id=first.id
    )
    with pytest.raises(cloudflare.BadRequestError) as error:
        vnets.delete(first.id, account_id=account_id)
    assert error.value.errors[0].code == 1024
    routes.delete(route.id, account_id=account_id)
    assert vnets.delete(first.id, account_id=account_id).deleted_at is not None
