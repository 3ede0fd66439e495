"""The tunnels half of the Cloudflare boundary: answers come back as records, built once from the SDK's models."""

import logging
import uuid

import pytest

from integrations import cloudflare as cf
from integrations import records


def test_tunnel_answers_are_records_with_parsed_ids_and_times(cloudflare_sim):
    tunnels, total = cf.tunnels_page(1)
    assert total == len(tunnels) == 24
    assert all(isinstance(t, records.Tunnel) and isinstance(t.id, uuid.UUID) for t in tunnels)
    healthy = next(t for t in tunnels if t.status == "healthy")
    assert healthy.conns_active_at is not None and healthy.conns_active_at.tzinfo is not None
    connectors = cf.tunnel_connectors(str(healthy.id))
    assert connectors and all(c.conns and all(conn.colo_name for conn in c.conns) for c in connectors)
    zones = cf.zones()
    assert sorted(z.name for z in zones) == ["example.com", "example.io"]
    for record in cf.tunnel_dns_records(zones[0].id):
        assert record.type == "CNAME" and record.tunnel_id == uuid.UUID(record.content.split(".")[0])


def test_an_object_with_a_malformed_id_is_left_out_of_its_list(cloudflare_sim, caplog):
    sim = cloudflare_sim
    forged = {**sim.store.list("tunnel", sim.account_id)[0], "id": "../../zones", "name": "forged"}
    sim.store.put("tunnel", forged, sim.account_id)
    caplog.set_level(logging.WARNING)
    tunnels, total = cf.tunnels_page(1)
    assert "forged" not in {t.name for t in tunnels} and len(tunnels) == total - 1
    assert "left out a tunnel without a valid id" in caplog.text


def test_a_configuration_goes_back_in_the_key_names_it_was_read_with(cloudflare_sim):
    """Keys the SDK types in snake_case (`origin_request`) are not renamed, and keys it does not type survive."""
    sim = cloudflare_sim
    tunnel = cf.tunnel_create("wire-shape")
    config = {
        "ingress": [
            {"hostname": "a.example.com", "service": "http://a:80", "origin_request": {"kept": "as read"}},
            {"hostname": "*", "service": "http_status:404"},
        ],
        "warp-routing": {"enabled": True},
    }
    sim.store.put(
        "tunnel_config",
        {"id": str(tunnel.id), "config": config, "version": 4, "created_at": "2026-11-30T00:00:00Z"},
        sim.account_id,
        parent=str(tunnel.id),
    )
    read = cf.tunnel_configuration(str(tunnel.id))
    assert read.version == 4 and read.config == config
    assert [(r.hostname, r.service, r.catch_all) for r in read.ingress] == [
        ("a.example.com", "http://a:80", False),
        ("*", "http_status:404", True),
    ]
    written = cf.tunnel_configuration_put(str(tunnel.id), read.config)
    assert written.version == 5
    assert sim.store.get("tunnel_config", str(tunnel.id), sim.account_id)["config"] == config


@pytest.mark.parametrize(
    "model,limit",
    [({"id": str(uuid.uuid4()), "name": "n" * 300}, 255), ({"id": str(uuid.uuid4()), "name": "\u202eabc\x07"}, 3)],
)
def test_tunnel_names_are_cut_to_the_column_and_cleared_of_control_characters(model, limit):
    name = records.Tunnel.from_sdk(model).name
    assert len(name) == limit and "\u202e" not in name and "\x07" not in name


def test_a_route_needs_a_network_and_a_tunnel():
    good = {"id": str(uuid.uuid4()), "network": "10.1.0.0/16", "tunnel_id": str(uuid.uuid4())}
    assert records.Route.from_sdk(good).network == "10.1.0.0/16"
    for broken in ({**good, "network": "10.1.0.0/99"}, {**good, "tunnel_id": None}):
        with pytest.raises(records.Malformed):
            records.Route.from_sdk(broken)
