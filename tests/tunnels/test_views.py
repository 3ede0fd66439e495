import uuid

import pytest
from django.urls import reverse

from tunnels.models import Tunnel


@pytest.fixture
def tunnel(synced):
    return Tunnel.objects.filter(status=Tunnel.Status.DEGRADED).first()


def test_list_shows_counts_and_every_tunnel(viewer_client, synced):
    response = viewer_client.get(reverse("tunnels:tunnel_list"))
    body = response.content.decode()
    assert response.status_code == 200
    assert f"Degraded: <strong>{Tunnel.objects.filter(status='degraded').count()}</strong>" in body
    for tunnel in Tunnel.objects.all():
        assert tunnel.name in body


def test_list_htmx_request_gets_only_the_table(viewer_client, synced, htmx_headers):
    response = viewer_client.get(reverse("tunnels:tunnel_list"), {"status": "down"}, headers=htmx_headers)
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="tunnel-table"')
    assert "<html" not in body
    down = Tunnel.objects.filter(status="down").values_list("name", flat=True)
    healthy = Tunnel.objects.filter(status="healthy").values_list("name", flat=True)
    assert all(name in body for name in down)
    assert not any(name in body for name in healthy)


def test_list_polls_only_while_visible(viewer_client, synced):
    body = viewer_client.get(reverse("tunnels:tunnel_list")).content.decode()
    assert 'hx-trigger="every 10s"' in body and "data-poll-visible" in body


def test_list_flags_outdated_versions(viewer_client, synced):
    assert "outdated" in viewer_client.get(reverse("tunnels:tunnel_list")).content.decode()


def test_detail_explains_degraded_in_plain_words(viewer_client, tunnel):
    body = viewer_client.get(reverse("tunnels:tunnel_detail", args=[tunnel.cf_id])).content.decode()
    assert "Why degraded" in body
    assert "waiting to reconnect" in body
    assert "90 days" in body


def test_detail_htmx_request_gets_the_overview_fragment(viewer_client, tunnel, htmx_headers):
    response = viewer_client.get(reverse("tunnels:tunnel_detail", args=[tunnel.cf_id]), headers=htmx_headers)
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="tunnel-overview"') and "<html" not in body


def test_route_lookup_finds_the_longest_prefix(viewer_client, synced, htmx_headers):
    import uuid

    from tunnels.models import Route, VirtualNetwork

    wide, narrow, other = Tunnel.objects.order_by("name")[:3]
    vnet, elsewhere = VirtualNetwork.objects.order_by("name")[:2]
    # Overlapping routes in the same network, listed out of order; a yet narrower one in another network.
    for network, tunnel, network_of in (
        ("10.77.5.0/24", narrow, vnet),
        ("10.77.0.0/16", wide, vnet),
        ("10.77.5.96/28", other, vnet),
        ("10.77.5.100/30", other, elsewhere),
    ):
        Route.objects.create(
            cf_id=uuid.uuid4(), network=network, tunnel=tunnel, tunnel_cf_id=tunnel.cf_id, virtual_network=network_of
        )

    def lookup(address):
        params = {"ip": address, "vnet": str(vnet.cf_id)}
        return viewer_client.get(reverse("tunnels:route_list"), params, headers=htmx_headers).content.decode()

    body = lookup("10.77.5.200")
    assert "by the route <code>10.77.5.0/24</code>" in body
    assert narrow.name in body and wide.name not in body
    body = lookup("10.77.9.1")
    assert "by the route <code>10.77.0.0/16</code>" in body and wide.name in body
    body = lookup("10.77.5.101")
    assert "by the route <code>10.77.5.96/28</code>" in body and other.name in body


def test_overview_shows_tunnels_by_status_changes_and_open_alerts(viewer_client, synced, settings):
    import time

    from cloudflare_sim import control
    from tunnels import sync

    settings.GATEHOUSE_TUNNEL_ALERT_GRACE_SECONDS = 0
    tunnel = Tunnel.objects.filter(status="healthy").first()
    control.run_event(synced.store, "tunnel-down", time.time(), tunnel=tunnel.name)
    sync.sync_pass()
    body = viewer_client.get(reverse("dashboard:home")).content.decode()
    assert f"Tunnel {tunnel.name} is down" in body
    assert "healthy → " in body
    assert f'?status=down">Down</a></dt><dd>{Tunnel.objects.filter(status="down").count()}</dd>' in body


def test_list_query_count_does_not_grow_with_the_fleet(viewer_client, synced):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("tunnels:tunnel_list")
    with CaptureQueriesContext(connection) as small:
        viewer_client.get(url)
    Tunnel.objects.bulk_create(
        [
            Tunnel(cf_id=f"00000000-0000-4000-8000-{i:012d}", name=f"extra-{i:04d}", versions="2025.8.0,2026.10.0")
            for i in range(200)
        ]
    )
    with CaptureQueriesContext(connection) as large:
        viewer_client.get(url)
    assert len(large.captured_queries) == len(small.captured_queries)


def test_list_filters_by_connector_version_and_virtual_network(viewer_client, synced, htmx_headers):
    from tunnels.models import Connector, VirtualNetwork

    old = Connector.objects.filter(version="2025.8.0").select_related("tunnel").first() or (
        Connector.objects.filter(version="2025.11.1").select_related("tunnel").first()
    )
    body = viewer_client.get(reverse("tunnels:tunnel_list"), {"version": old.version}).content.decode()
    with_version = set(Connector.objects.filter(version=old.version).values_list("tunnel__name", flat=True))
    assert all(name in body for name in with_version)
    assert not any(t.name in body for t in Tunnel.objects.exclude(name__in=with_version))
    staging = VirtualNetwork.objects.get(name="staging-vpc")
    body = viewer_client.get(
        reverse("tunnels:tunnel_list"), {"vnet": str(staging.cf_id)}, headers=htmx_headers
    ).content.decode()
    assert "staging-" in body and "prod-" not in body


def test_list_sorts_by_name_and_searches(viewer_client, synced, htmx_headers):
    params = {"sort": "name", "q": "prod"}
    body = viewer_client.get(reverse("tunnels:tunnel_list"), params, headers=htmx_headers).content.decode()
    names = sorted(Tunnel.objects.filter(name__icontains="prod").values_list("name", flat=True))
    positions = [body.index(f">{name}</a>") for name in names]
    assert positions == sorted(positions)
    assert "staging-" not in body


def test_route_page_flags_overlaps_and_dns_records_to_missing_tunnels(viewer_client, synced):
    from tunnels.models import DnsRecord, Route, Zone

    route = Route.objects.select_related("virtual_network").first()
    Route.objects.create(
        cf_id="22222222-2222-4222-8222-222222222222",
        network=route.network.rsplit(".", 1)[0] + ".0/28",
        tunnel_cf_id=route.tunnel_cf_id,
        tunnel=route.tunnel,
        virtual_network=route.virtual_network,
    )
    DnsRecord.objects.create(
        cf_id="f" * 32,
        zone=Zone.objects.first(),
        name="ghost.example.com",
        content="33333333-3333-4333-8333-333333333333.cfargotunnel.com",
        tunnel_cf_id="33333333-3333-4333-8333-333333333333",
    )
    body = viewer_client.get(reverse("tunnels:route_list")).content.decode()
    assert "2 overlapping" in body and f"overlaps {route.network}" in body
    assert "ghost.example.com" in body


def test_route_lookup_htmx_gets_the_answer_fragment(viewer_client, synced, htmx_headers):
    from tunnels.models import Route

    route = Route.objects.select_related("virtual_network").first()
    response = viewer_client.get(
        reverse("tunnels:route_list"),
        {"ip": "172.31.255.1", "vnet": str(route.virtual_network.cf_id)},
        headers=htmx_headers,
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="route-lookup"') and "No route in" in body


def test_deleted_tunnel_page_keeps_history(viewer_client, synced):
    from django.utils import timezone

    tunnel = Tunnel.objects.first()
    Tunnel.objects.filter(pk=tunnel.pk).update(deleted_at=timezone.now())
    body = viewer_client.get(reverse("tunnels:tunnel_detail", args=[tunnel.cf_id])).content.decode()
    assert "Deleted" in body and "first seen" in body
    assert tunnel.name not in viewer_client.get(reverse("tunnels:tunnel_list")).content.decode()


@pytest.mark.parametrize("page", ["999999999999999999999", "9223372036854775807", "0", "-3", "x"])
def test_list_answers_any_page_number(viewer_client, db, page):
    Tunnel.objects.create(cf_id=uuid.uuid4(), name="t1", status="healthy", status_rank=3)
    response = viewer_client.get(reverse("tunnels:tunnel_list"), {"page": page})
    assert response.status_code == 200, f"page={page} answered {response.status_code}"
    assert "t1" in response.content.decode()
