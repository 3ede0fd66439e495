"""The catalogue, the origin page, applications and the ingest page, as each role sees them."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dashboard.requestinfo import RequestOrigin
from discovery import services
from discovery.models import Application, IngestRun, OriginDaily, ReviewState

LIST = reverse("discovery:origin_list")


def test_the_catalogue_lists_origins_busiest_first_for_a_viewer(viewer_client, make_origin):
    quiet = make_origin(users=1)
    busy = make_origin(users=40)
    body = viewer_client.get(LIST).content.decode()
    assert body.index(busy.label) < body.index(quiet.label)
    assert "<html" in body
    assert 'form="bulk-form"' not in body  # viewers get no bulk actions


def test_an_htmx_request_gets_only_the_table(viewer_client, make_origin, htmx_headers):
    make_origin()
    body = viewer_client.get(LIST, headers=htmx_headers).content.decode()
    assert body.lstrip().startswith('<div id="origin-table">')
    assert "<html" not in body


def test_operators_get_bulk_actions_on_a_selection(operator_client, make_origin):
    o = make_origin()
    body = operator_client.get(LIST).content.decode()
    assert f'value="{o.public_id}" form="bulk-form"' in body


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"state": "approved"}, {"approved"}),
        ({"cidr": "10.9.0.0/16"}, {"in-cidr"}),
        ({"port": "5432"}, {"postgres"}),
        ({"protocol": "UDP"}, {"udp"}),
        ({"source": "inventory"}, {"inventory-only"}),
        ({"source": "both"}, {"both"}),
        ({"covered": "yes"}, {"covered"}),
        ({"q": "billing"}, {"inventory-only"}),
        ({"vnet": "0e6a1b22-7e0f-4a4a-8a5e-9d2b8c1f3a44"}, {"other-vnet"}),
    ],
)
def test_each_filter_narrows_the_catalogue(viewer_client, make_origin, query, expected):
    protected = Application.objects.create(name="covered-app", protection=Application.Protection.PROTECTED)
    named = {
        "approved": make_origin(review_state=ReviewState.APPROVED),
        "in-cidr": make_origin(address="10.9.3.4"),
        "postgres": make_origin(port=5432),
        "udp": make_origin(protocol="UDP", port=10000),
        "inventory-only": make_origin(
            seen_in_traffic=False, seen_in_inventory=True, search_text="billing-db", sessions=0
        ),
        "both": make_origin(seen_in_inventory=True),
        "covered": make_origin(application=protected),
        "other-vnet": make_origin(vnet_id="0e6a1b22-7e0f-4a4a-8a5e-9d2b8c1f3a44"),
    }
    body = viewer_client.get(LIST, query).content.decode()
    shown = {name for name, o in named.items() if str(o.public_id) in body}
    assert shown == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BILLING", {"named"}),  # any case
        ("ling-d", {"named"}),  # inside a word
        ("10.77.", {"address"}),
        ("8f0cb2b4-6a2e", {"tunnel"}),
        ("db", {"named"}),  # shorter than a trigram
        ('"; drop', set()),
    ],
)
def test_the_free_text_filter_finds_words_addresses_and_ids_anywhere(viewer_client, make_origin, text, expected):
    named = {
        "named": make_origin(hostnames=["billing-db.internal"]),
        "address": make_origin(address="10.77.1.2"),
        "tunnel": make_origin(tunnel_id="8f0cb2b4-6a2e-4b7a-9a57-4a4f4cb0c1de"),
    }
    body = viewer_client.get(LIST, {"q": text}).content.decode()
    assert {name for name, o in named.items() if str(o.public_id) in body} == expected


def test_the_free_text_filter_follows_what_the_ingest_changes(make_origin):
    from discovery import selectors

    origin = make_origin()
    origin.hostnames = ["payroll.internal"]
    origin.search_text = origin.compute_search_text()
    origin.save()
    found = selectors.origins_filtered(filters=selectors.OriginFilters(text="payroll"))
    assert list(found) == [origin]
    origin.delete()
    assert not selectors.origins_filtered(filters=selectors.OriginFilters(text="payroll")).exists()


def test_a_bad_cidr_is_explained_not_a_crash(viewer_client):
    response = viewer_client.get(LIST, {"cidr": "10.0.0.0/99"})
    assert response.status_code == 200
    assert "Not a CIDR" in response.content.decode()


@pytest.mark.parametrize("sort", ["users", "sessions", "bytes", "last_seen"])
def test_paging_by_cursor_shows_every_origin_once_in_order(viewer_client, make_origin, sort, settings):
    import datetime as dt

    from django.utils import timezone

    from discovery import selectors

    now = timezone.now()
    for i in range(23):
        # Ties on purpose: equal sort values must not lose or repeat rows across pages.
        make_origin(
            users=i % 4,
            sessions=i % 5,
            bytes_total=i % 3,
            last_seen=None if i % 6 == 0 else now - dt.timedelta(hours=i % 7),
        )
    seen, after = [], None
    while True:
        page = selectors.origin_page(filters=selectors.OriginFilters(), sort=sort, after=after, size=5)
        seen.extend(page.origins)
        if not page.next_cursor:
            break
        after = selectors.Cursor.decode(page.next_cursor)
    assert len(seen) == 23 == len({o.pk for o in seen})
    column = selectors.SORTS[sort]
    values = [getattr(o, column) for o in seen]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=True)
    assert values[len(present) :] == [None] * (len(values) - len(present))


def test_the_catalogue_costs_the_same_queries_at_ten_and_at_two_hundred_origins(viewer_client, make_origin):
    for _ in range(10):
        make_origin()
    with CaptureQueriesContext(connection) as small:
        viewer_client.get(LIST)
    for _ in range(190):
        make_origin(application=Application.objects.get_or_create(name="x")[0])
    with CaptureQueriesContext(connection) as large:
        viewer_client.get(LIST, {"sort": "sessions"})
    assert len(large) == len(small)


def test_text_from_aws_and_logs_is_escaped(viewer_client, make_origin):
    o = make_origin(
        inventory={"name": "<script>alert(1)</script>", "tags": {"x": "<img src=x onerror=alert(2)>"}},
        top_users={"<b>eve</b>@example.com": 3},
    )
    for url in (LIST, reverse("discovery:origin_detail", args=[o.public_id])):
        body = viewer_client.get(url).content.decode()
        assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)" in body
    assert "<img src=x" not in body and "<b>eve</b>" not in body


def test_the_origin_page_shows_counts_charts_users_inventory_and_history(viewer_client, make_origin, operator):
    import datetime as dt

    o = make_origin(
        top_users={"alice@example.com": 7},
        hostnames=["db.internal.example"],
        inventory={"kind": "rds", "id": "orders-db", "name": "orders-db (postgres)", "region": "eu-west-1", "tags": {}},
        seen_in_inventory=True,
    )
    OriginDaily.objects.create(origin=o, day=dt.date(2026, 11, 19), sessions=5, users=2)
    OriginDaily.objects.create(origin=o, day=dt.date(2026, 11, 20), sessions=9, users=3)
    app = services.application_create(
        actor=operator, name="Orders", owner="team-orders", request_origin=RequestOrigin()
    )
    services.application_add_origins(actor=operator, application=app, origins=[o], request_origin=RequestOrigin())
    body = viewer_client.get(reverse("discovery:origin_detail", args=[o.public_id])).content.decode()
    assert "alice@example.com" in body and "db.internal.example" in body and "orders-db (postgres)" in body
    assert body.count("<rect ") == 4
    assert "2026-11-20: 9 sessions" in body
    assert "joined application Orders" in body
    assert "no route data" in body
    assert "Approve" not in body  # viewers read; they do not decide


def test_an_operator_reviews_from_the_origin_page_and_htmx_gets_the_review_card(
    operator_client, operator, make_origin, htmx_headers
):
    o = make_origin()
    app = services.application_create(actor=operator, name="Video", owner="", request_origin=RequestOrigin())
    services.application_add_origins(actor=operator, application=app, origins=[o], request_origin=RequestOrigin())
    url = reverse("discovery:origin_review", args=[o.public_id])
    response = operator_client.post(url, {"decision": "approve", "reason": "owned by video team"}, headers=htmx_headers)
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<section class="card" id="origin-review">')
    o.refresh_from_db()
    assert o.review_state == ReviewState.APPROVED


def test_unapproving_without_a_reason_is_refused_with_a_message(operator_client, operator, make_origin):
    o = make_origin()
    app = services.application_create(actor=operator, name="Video", owner="", request_origin=RequestOrigin())
    services.application_add_origins(actor=operator, application=app, origins=[o], request_origin=RequestOrigin())
    response = operator_client.post(
        reverse("discovery:origin_review", args=[o.public_id]), {"decision": "unapprove"}, follow=True
    )
    assert "Say why" in response.content.decode()
    o.refresh_from_db()
    assert o.review_state == ReviewState.IN_REVIEW


def test_viewers_cannot_review(viewer_client, make_origin):
    o = make_origin()
    response = viewer_client.post(reverse("discovery:origin_review", args=[o.public_id]), {"decision": "approve"})
    assert response.status_code == 403


def test_bulk_add_to_an_application_then_bulk_approve(operator_client, operator, make_origin):
    picked = [make_origin(), make_origin()]
    left = make_origin()
    app = services.application_create(actor=operator, name="Video", owner="", request_origin=RequestOrigin())
    ids = [str(o.public_id) for o in picked]
    url = reverse("discovery:origin_bulk")
    operator_client.post(url, {"action": "add", "application": str(app.public_id), "origin": ids})
    operator_client.post(url, {"action": "approve", "origin": ids, "reason": "reviewed with owner"})
    for o in picked:
        o.refresh_from_db()
        assert (o.application_id, o.review_state) == (app.pk, ReviewState.APPROVED)
    left.refresh_from_db()
    assert (left.application_id, left.review_state) == (None, ReviewState.UNREVIEWED)


def test_bulk_approving_unreviewed_origins_approves_them_with_the_reason(operator_client, make_origin):
    first, second = make_origin(), make_origin()
    response = operator_client.post(
        reverse("discovery:origin_bulk"),
        {"action": "approve", "reason": "owners confirmed", "origin": [str(first.public_id), str(second.public_id)]},
        follow=True,
    )
    assert "2 origin(s) updated." in response.content.decode()
    for origin in (first, second):
        origin.refresh_from_db()
        assert origin.review_state == ReviewState.APPROVED
        assert origin.review_events.get().reason == "owners confirmed"


def test_a_decision_that_does_not_apply_to_one_of_the_selection_changes_none_of_it(operator_client, make_origin):
    fresh = make_origin()
    approved = make_origin(review_state=ReviewState.APPROVED)
    response = operator_client.post(
        reverse("discovery:origin_bulk"),
        {"action": "start_review", "origin": [str(fresh.public_id), str(approved.public_id)]},
        follow=True,
    )
    assert f"Only unreviewed origins can be in review: {approved.label}." in response.content.decode()
    fresh.refresh_from_db()
    assert fresh.review_state == ReviewState.UNREVIEWED


def test_creating_an_application_and_seeing_it_listed(operator_client):
    response = operator_client.post(
        reverse("discovery:application_create"), {"name": "Video calls", "owner": "av-team"}, follow=True
    )
    assert response.status_code == 200
    app = Application.objects.get(name="Video calls")
    assert app.owner == "av-team"
    assert "Video calls" in operator_client.get(reverse("discovery:application_list")).content.decode()


def test_the_application_page_names_each_origins_virtual_network(viewer_client, make_origin):
    import uuid

    from tunnels.models import VirtualNetwork

    prod = VirtualNetwork.objects.create(cf_id=uuid.uuid4(), name="prod-<vpc>")
    unsynced = str(uuid.uuid4())
    app = Application.objects.create(name="Payroll")
    for address, vnet in (("10.0.0.1", str(prod.cf_id)), ("10.0.0.2", unsynced), ("10.0.0.3", "")):
        app.origins.add(make_origin(address=address, vnet_id=vnet))

    body = viewer_client.get(reverse("discovery:application_detail", args=[app.public_id])).content.decode()
    rows = {
        address: body[body.index(f">{address}:") :].split("</tr>")[0]
        for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    }

    assert "prod-&lt;vpc&gt;</span>" in rows["10.0.0.1"]
    assert f'title="{unsynced}"' in rows["10.0.0.2"] and "prod-" not in rows["10.0.0.2"]
    assert "unknown" in rows["10.0.0.3"]


def test_the_ingest_page_shows_each_run_and_what_it_refused(viewer_client):
    IngestRun.objects.create(source="s3://b/p", records=100, accepted=90, malformed=4, wrong_type=3, absurd=2, public=1)
    body = viewer_client.get(reverse("discovery:ingest_list")).content.decode()
    assert "s3://b/p" in body and ">90<" in body and ">4<" in body


def test_origin_ids_in_urls_are_uuids(viewer_client, make_origin):
    origin = make_origin()
    url = reverse("discovery:origin_detail", args=[origin.public_id])
    assert url == f"/discovery/origins/{origin.public_id}/"
    assert viewer_client.get(url).status_code == 200
    # The list links each origin by its UUID; the row's number does not name it in a URL.
    assert f'href="{url}"' in viewer_client.get(reverse("discovery:origin_list")).content.decode()
    assert viewer_client.get(f"/discovery/origins/{origin.pk}/").status_code == 404


def test_the_origin_page_names_the_route_and_tunnel_by_longest_prefix_in_its_network(viewer_client, make_origin):
    import uuid

    from tunnels.models import Route, Tunnel, VirtualNetwork

    mine = VirtualNetwork.objects.create(cf_id=uuid.uuid4(), name="prod-vpc")
    other = VirtualNetwork.objects.create(cf_id=uuid.uuid4(), name="staging-vpc")
    wide = Tunnel.objects.create(cf_id=uuid.uuid4(), name="core-wide")
    narrow = Tunnel.objects.create(cf_id=uuid.uuid4(), name="db-narrow")
    elsewhere = Tunnel.objects.create(cf_id=uuid.uuid4(), name="staging")
    for network, tunnel, vnet in (
        ("10.20.0.0/16", wide, mine),
        ("10.20.5.0/24", narrow, mine),
        ("10.20.5.0/28", elsewhere, other),
    ):
        Route.objects.create(
            cf_id=uuid.uuid4(), network=network, tunnel=tunnel, tunnel_cf_id=tunnel.cf_id, virtual_network=vnet
        )
    routed = make_origin(address="10.20.5.9", vnet_id=str(mine.cf_id))
    unrouted = make_origin(address="10.99.0.1", vnet_id=str(mine.cf_id))

    body = viewer_client.get(reverse("discovery:origin_detail", args=[routed.public_id])).content.decode()
    assert "10.20.5.0/24 via db-narrow" in body and "prod-vpc" in body
    body = viewer_client.get(reverse("discovery:origin_detail", args=[unrouted.public_id])).content.decode()
    assert "no route<" in body.replace("</dd>", "<")


@pytest.fixture
def routes():
    """Two virtual networks (prod-vpc the default) and their routes: 10.20.0.0/16 in prod, 10.30.0.0/16 in staging."""
    import uuid

    from tunnels.models import Route, Tunnel, VirtualNetwork

    prod = VirtualNetwork.objects.create(cf_id=uuid.uuid4(), name="prod-vpc", is_default=True)
    staging = VirtualNetwork.objects.create(cf_id=uuid.uuid4(), name="staging-vpc")
    core = Tunnel.objects.create(cf_id=uuid.uuid4(), name="core")
    for network, vnet in (("10.20.0.0/16", prod), ("10.30.0.0/16", staging)):
        Route.objects.create(
            cf_id=uuid.uuid4(), network=network, tunnel=core, tunnel_cf_id=core.cf_id, virtual_network=vnet
        )
    return {"prod": str(prod.cf_id), "staging": str(staging.cf_id)}


def _table_ids(body: str) -> set[str]:
    import re

    return set(re.findall(r'href="/discovery/origins/([0-9a-f-]{36})/"', body))


def test_the_catalogue_names_virtual_networks_and_the_route_of_each_origin(viewer_client, make_origin, routes):
    make_origin(address="10.20.1.1", vnet_id=routes["prod"])
    make_origin(address="10.20.1.2", vnet_id=routes["staging"])
    body = viewer_client.get(LIST).content.decode()
    assert f'<span title="{routes["prod"]}">prod-vpc</span>' in body
    assert f'<span title="{routes["staging"]}">staging-vpc</span>' in body
    assert "<code title=" not in body  # no network shown by its id
    assert "10.20.0.0/16 via core" in body
    assert body.count("no route</span>") == 1  # 10.20.1.2 is in staging, where only 10.30.0.0/16 is routed


@pytest.mark.parametrize(
    ("route", "expected"), [("no", {"unrouted", "other-network", "hostname"}), ("yes", {"routed", "unknown-network"})]
)
def test_the_route_filter_finds_origins_no_private_route_carries(viewer_client, make_origin, routes, route, expected):
    named = {
        "routed": make_origin(address="10.20.1.1", vnet_id=routes["prod"]),
        "unrouted": make_origin(address="10.21.0.1", vnet_id=routes["prod"]),
        "other-network": make_origin(address="10.20.1.1", vnet_id=routes["staging"]),
        # An origin of unknown network is looked up in the default network, as on its own page.
        "unknown-network": make_origin(address="10.20.9.9", vnet_id=""),
        "hostname": make_origin(address="orders.cluster.eu-west-1.rds.amazonaws.com", vnet_id=""),
    }
    body = viewer_client.get(LIST, {"route": route}).content.decode()
    assert _table_ids(body) == {str(named[name].public_id) for name in expected}


def test_the_catalogue_filters_by_virtual_network_name(viewer_client, make_origin, routes):
    mine = make_origin(vnet_id=routes["staging"])
    make_origin(vnet_id=routes["prod"])
    body = viewer_client.get(LIST).content.decode()
    assert f'<option value="{routes["staging"]}">staging-vpc</option>' in body
    assert _table_ids(viewer_client.get(LIST, {"vnet": routes["staging"]}).content.decode()) == {str(mine.public_id)}


def test_routes_and_names_cost_the_same_queries_at_ten_and_at_a_hundred_origins(viewer_client, make_origin, routes):
    for _ in range(10):
        make_origin(vnet_id=routes["prod"])
    with CaptureQueriesContext(connection) as small:
        viewer_client.get(LIST, {"route": "no"})
    for i in range(90):
        make_origin(vnet_id=routes["staging" if i % 2 else "prod"], address=f"10.20.{i}.1")
    with CaptureQueriesContext(connection) as large:
        body = viewer_client.get(LIST, {"route": "no"}).content.decode()
    assert len(large) == len(small)
    assert "no route</span>" in body


def test_the_header_tells_how_fresh_the_traffic_is_and_the_last_pass_that_read_lines(viewer_client, make_origin):
    import datetime as dt

    from discovery.models import LogObject

    make_origin(last_seen=dt.datetime(2026, 11, 20, 11, 55, tzinfo=dt.UTC))
    IngestRun.objects.create(source="s3://logs/x", records=3000, accepted=2990, objects_done=2, malformed=10,
                             started_at=dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC))  # fmt: skip
    IngestRun.objects.create(source="s3://logs/x", started_at=dt.datetime(2026, 11, 20, 12, 5, tzinfo=dt.UTC))
    LogObject.objects.create(bucket="logs", key="a.log.gz", etag="e1")
    LogObject.objects.create(bucket="logs", key="b.log.gz", etag="e2", state=LogObject.State.DONE)

    body = " ".join(viewer_client.get(LIST).content.decode().split())
    assert "Traffic data up to" in body and "2026-11-20 11:55</time> UTC (newest session seen)" in body
    assert "1 Logpush object waiting" in body
    assert "Last pass that read lines: 2026-11-20 12:00 UTC, 2 objects, 2990 sessions counted" in body
    assert "Last pass 2026-11-20 12:05 UTC" in body


def test_the_export_streams_the_filtered_catalogue_as_csv_with_formulas_neutralised(viewer_client, make_origin, routes):
    import csv
    import io

    hostile = make_origin(address="10.20.3.3", vnet_id=routes["prod"], hostnames=["=cmd|' /C calc'!a0"], port=5432,
                          inventory={"kind": "ec2", "id": "i-1", "name": "@SUM(1+1)"})  # fmt: skip
    make_origin(port=443)
    response = viewer_client.get(reverse("discovery:origin_export"), {"port": "5432"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="gatehouse-origins-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["origin"] for r in rows] == [hostile.label]
    [row] = rows
    assert row["virtual network"] == "prod-vpc" and row["private route"] == "10.20.0.0/16" and row["tunnel"] == "core"
    assert row["hostnames"] == "'=cmd|' /C calc'!a0" and row["inventory name"] == "'@SUM(1+1)"
    assert row["review"] == "Unreviewed"


def test_an_export_with_broken_filters_explains_instead_of_exporting(viewer_client):
    response = viewer_client.get(reverse("discovery:origin_export"), {"cidr": "10.0.0.0/99"}, follow=True)
    assert "Fix the filters before exporting." in response.content.decode()


def test_the_origin_page_offers_the_decisions_of_its_state(operator_client, make_origin):
    fresh = make_origin()
    body = operator_client.get(reverse("discovery:origin_detail", args=[fresh.public_id])).content.decode()
    assert 'value="approve"' in body and 'value="unapprove"' in body and 'value="start_review"' in body
    assert 'value="reopen"' not in body
    approved = make_origin(review_state=ReviewState.APPROVED)
    body = operator_client.get(reverse("discovery:origin_detail", args=[approved.public_id])).content.decode()
    assert 'value="unapprove"' in body and 'value="reopen"' in body and 'value="approve"' not in body
