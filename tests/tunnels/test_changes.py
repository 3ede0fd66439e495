import pytest
from django.urls import reverse

from dashboard.models import AuditEntry
from tunnels import services
from tunnels.models import DnsRecord, PublicHostname, Route, Tunnel, TunnelChange, TunnelChangeStep, VirtualNetwork
from tunnels.tasks import tunnel_change_run


def _live(sim, kind):
    return [d for d in sim.store.list(kind, sim.account_id) if d.get("deleted_at") is None]


def _config(sim, tunnel):
    return sim.store.get("tunnel_config", str(tunnel.cf_id), sim.account_id)["config"]["ingress"]


@pytest.fixture
def remote(synced):
    return Tunnel.objects.filter(remote_config=True, hostname_count__gt=0).order_by("name").first()


def test_create_tunnel_shows_the_token_once_to_its_creator(operator_client, synced, run):
    response = run(operator_client, reverse("tunnels:tunnel_create"), {"name": "new-edge-1"})
    change = TunnelChange.objects.get()
    assert response["Location"] == reverse("tunnels:change_detail", args=[change.public_id])
    assert change.status == TunnelChange.Status.SUCCEEDED
    created = [t for t in _live(synced, "tunnel") if t["name"] == "new-edge-1"]
    assert len(created) == 1 and created[0]["remote_config"]
    from cloudflare_sim.endpoints_networks import tunnel_token

    token = tunnel_token(created[0])
    assert token not in change.token_ciphertext
    page = operator_client.get(response["Location"]).content.decode()
    assert token not in page and reverse("tunnels:change_token", args=[change.public_id]) in page
    change.refresh_from_db()
    assert change.token_ciphertext != "", "reading the page must not take the token"
    first = operator_client.post(reverse("tunnels:change_token", args=[change.public_id])).content.decode()
    assert f"cloudflared tunnel run --token {token}" in first
    second = operator_client.post(reverse("tunnels:change_token", args=[change.public_id])).content.decode()
    assert token not in second and token not in operator_client.get(response["Location"]).content.decode()
    change.refresh_from_db()
    assert change.token_ciphertext == ""
    entry = AuditEntry.objects.get(action="tunnel.created")
    assert token not in str(entry.details) and entry.target_label == "new-edge-1"


def test_someone_else_never_sees_the_token(operator_client, admin_client, synced, run):
    response = run(operator_client, reverse("tunnels:tunnel_create"), {"name": "new-edge-2"})
    change = TunnelChange.objects.get()
    assert "--token" not in admin_client.get(response["Location"]).content.decode()
    assert "--token" not in admin_client.post(reverse("tunnels:change_token", args=[change.public_id])).content.decode()
    change.refresh_from_db()
    assert change.token_ciphertext != "", "someone else asking must not wipe the creator's token"


def test_tunnel_create_task_twice_makes_one_tunnel(operator, synced, django_capture_on_commit_callbacks):
    from dashboard.requestinfo import RequestOrigin

    with django_capture_on_commit_callbacks(execute=True):
        change = services.tunnel_create(actor=operator, name="twice", request_origin=RequestOrigin())
    # Delivered again as if the first run had not been recorded: the change and its step start over.
    TunnelChange.objects.filter(pk=change.pk).update(status=TunnelChange.Status.PENDING)
    change.steps.update(status=TunnelChangeStep.Status.PENDING)
    tunnel_change_run(change.pk)
    assert len([t for t in _live(synced, "tunnel") if t["name"] == "twice"]) == 1


def test_duplicate_tunnel_name_is_refused_next_to_the_field(operator_client, synced):
    name = Tunnel.objects.first().name
    response = operator_client.post(reverse("tunnels:tunnel_create"), {"name": name})
    assert response.status_code == 400
    assert "A tunnel with this name already exists." in response.content.decode()


def test_add_hostname_updates_config_keeps_catch_all_last_and_creates_cname(operator_client, remote, synced, run):
    before = _config(synced, remote)
    run(
        operator_client,
        reverse("tunnels:hostname_add", args=[remote.cf_id]),
        {"hostname": "NewApp.example.com", "service": "http://newapp.internal:8080"},
    )
    change = TunnelChange.objects.get()
    assert change.status == TunnelChange.Status.SUCCEEDED, change.reason
    after = _config(synced, remote)
    assert after[:-1] == [*before[:-1], {"hostname": "newapp.example.com", "service": "http://newapp.internal:8080"}]
    assert after[-1] == {"hostname": "*", "service": "http_status:404"}
    records = [r for r in synced.store.list("dns_record") if r["name"] == "newapp.example.com"]
    assert [(r["type"], r["content"], r["proxied"]) for r in records] == [
        ("CNAME", f"{remote.cf_id}.cfargotunnel.com", True)
    ]
    assert PublicHostname.objects.filter(tunnel=remote, hostname="newapp.example.com").exists()
    assert AuditEntry.objects.filter(action="tunnel.hostname_added", target_id=str(remote.cf_id)).exists()


def test_add_hostname_keeps_a_rule_someone_added_at_cloudflare_meanwhile(operator_client, remote, synced, run):
    doc = synced.store.get("tunnel_config", str(remote.cf_id), synced.account_id)
    doc["config"]["ingress"].insert(0, {"hostname": "concurrent.example.com", "service": "http://c:1"})
    synced.store.put("tunnel_config", doc, synced.account_id, parent=str(remote.cf_id))
    run(
        operator_client,
        reverse("tunnels:hostname_add", args=[remote.cf_id]),
        {"hostname": "mine.example.com", "service": "https://mine.internal"},
    )
    hostnames = [r["hostname"] for r in _config(synced, remote)]
    assert "concurrent.example.com" in hostnames and "mine.example.com" in hostnames


@pytest.mark.parametrize(
    "hostname,service,field,message",
    [
        ("bad_host.example.com", "http://a:80", "hostname", "is not a valid label"),
        ("-x.example.com", "http://a:80", "hostname", "is not a valid label"),
        ("app.unknown-zone.org", "http://a:80", "hostname", "none of the zones"),
        ("ok.example.com", "ftp://a:21", "service", "Use http://host:port"),
        ("ok.example.com", "http://a:99999", "service", "Ports run from 1 to 65535."),
        ("ok.example.com", "http_status:999", "service", "Use http://host:port"),
    ],
)
def test_invalid_hostname_or_service_is_explained_next_to_the_field(
    operator_client, remote, hostname, service, field, message
):
    response = operator_client.post(
        reverse("tunnels:hostname_add", args=[remote.cf_id]), {"hostname": hostname, "service": service}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not TunnelChange.objects.exists()


@pytest.mark.parametrize(
    "service",
    [
        "ssh://bastion:22",
        "rdp://desk.internal:3389",
        "tcp://db:5432",
        "unix:/run/app.sock",
        "http_status:404",
        "https://[::1]:8443/x",
    ],
)
def test_every_service_kind_is_accepted(service):
    assert services.validate_service(service) == service


def test_remove_hostname_removes_the_rule_and_our_cname(operator_client, remote, synced, run):
    hostname = PublicHostname.objects.filter(tunnel=remote).first().hostname
    assert DnsRecord.objects.filter(name=hostname).exists()
    run(operator_client, reverse("tunnels:hostname_remove", args=[remote.cf_id]), {"hostname": hostname})
    assert TunnelChange.objects.get().status == TunnelChange.Status.SUCCEEDED
    assert hostname not in [r["hostname"] for r in _config(synced, remote)]
    assert _config(synced, remote)[-1]["service"] == "http_status:404"
    assert not [r for r in synced.store.list("dns_record") if r["name"] == hostname]


def test_add_and_remove_private_route(operator_client, remote, synced, run):
    vnet = VirtualNetwork.objects.get(name="prod-vpc")
    run(
        operator_client,
        reverse("tunnels:route_add", args=[remote.cf_id]),
        {"network": "10.200.0.0/24", "virtual_network": str(vnet.cf_id), "comment": "lab"},
    )
    assert [r["network"] for r in _live(synced, "route") if r["network"] == "10.200.0.0/24"] == ["10.200.0.0/24"]
    route = Route.objects.get(network="10.200.0.0/24")
    assert AuditEntry.objects.filter(action="tunnel.route_added").exists()
    run(operator_client, reverse("tunnels:route_remove", args=[route.cf_id]), {})
    assert not [r for r in _live(synced, "route") if r["network"] == "10.200.0.0/24"]
    assert not Route.objects.filter(network="10.200.0.0/24").exists()


def test_exact_duplicate_route_and_bad_cidr_are_refused(operator_client, remote, synced):
    existing = Route.objects.select_related("virtual_network").first()
    url = reverse("tunnels:route_add", args=[remote.cf_id])
    response = operator_client.post(
        url, {"network": existing.network, "virtual_network": str(existing.virtual_network.cf_id)}
    )
    assert response.status_code == 400 and "is already routed in" in response.content.decode()
    response = operator_client.post(
        url, {"network": "10.1.2.3/16", "virtual_network": str(existing.virtual_network.cf_id)}
    )
    assert "has host bits set; did you mean 10.1.0.0/16?" in response.content.decode()
    assert not TunnelChange.objects.exists()


def test_cloudflare_refusal_shows_as_a_failed_change_with_the_reason(operator_client, remote, synced, run):
    vnet = VirtualNetwork.objects.get(name="prod-vpc")
    # Someone routed the network at Cloudflare after Gatehouse last synced.
    synced.store.put(
        "route",
        {
            "id": "11111111-1111-4111-8111-111111111111",
            "network": "10.201.0.0/24",
            "tunnel_id": str(remote.cf_id),
            "virtual_network_id": str(vnet.cf_id),
            "comment": "",
            "created_at": "2026-11-23T00:00:00Z",
            "deleted_at": None,
        },
        synced.account_id,
    )
    response = run(
        operator_client,
        reverse("tunnels:route_add", args=[remote.cf_id]),
        {"network": "10.201.0.0/24", "virtual_network": str(vnet.cf_id)},
    )
    change = TunnelChange.objects.get()
    assert change.status == TunnelChange.Status.FAILED
    assert "already exists" in change.reason
    page = operator_client.get(response["Location"]).content.decode()
    assert "Cloudflare did not make the change" in page
    assert AuditEntry.objects.filter(action="tunnel.change_failed").exists()


def test_viewers_cannot_change_anything(viewer_client, remote, synced):
    from tests.test_urls import VIEWER
    from tests.tunnels.url_expectations import EXPECTED, UNKNOWN

    vnet = VirtualNetwork.objects.order_by("name").first()
    ids = {
        "tunnel_id": remote.cf_id,
        "route_id": Route.objects.order_by("network").first().cf_id,
        "vnet_id": vnet.cf_id,
        # Showing a token is refused by role before any change is looked up.
        "change_id": UNKNOWN,
    }
    hostname = PublicHostname.objects.filter(tunnel=remote).first().hostname
    # Each form filled in as an operator would, so that only the role stands between the viewer and the change.
    forms = {
        "tunnels:tunnel_create": {"name": "viewer-made"},
        "tunnels:hostname_add": {"hostname": "viewer.example.com", "service": "http://a:1"},
        "tunnels:hostname_remove": {"hostname": hostname},
        "tunnels:route_add": {"network": "10.99.0.0/24", "virtual_network": vnet.pk},
        "tunnels:tunnel_delete": {"confirm": remote.name},
        "tunnels:vnet_create": {"name": "viewer-net"},
        "tunnels:vnet_rename": {"name": "viewer-renamed"},
    }
    # Every URL that changes something (a POST) or leads to a change form, as the app's URL table lists them.
    changing = {
        name: (method, kwargs)
        for name, (method, kwargs, answers) in EXPECTED.items()
        if method == "post" or answers[VIEWER] == 403
    }
    assert len(changing) >= 15
    calls = synced.calls()
    for name, (method, kwargs) in changing.items():
        url = reverse(name, kwargs={key: ids[key] for key in kwargs})
        data = forms.get(name, {}) if method == "post" else {}
        assert getattr(viewer_client, method)(url, data).status_code == 403, name
    assert synced.calls() == calls  # Cloudflare was never asked
    assert not TunnelChange.objects.exists()
    assert not AuditEntry.objects.exclude(action__startswith="auth.").exists()


def test_hostname_add_run_twice_leaves_one_rule_and_one_record(
    operator, remote, synced, django_capture_on_commit_callbacks
):
    from dashboard.requestinfo import RequestOrigin

    with django_capture_on_commit_callbacks(execute=True):
        change = services.hostname_add(
            actor=operator,
            tunnel=remote,
            hostname="again.example.com",
            service="http://a:1",
            request_origin=RequestOrigin(),
        )
    # Delivered again as if the first run had not been recorded: the change and its step start over.
    TunnelChange.objects.filter(pk=change.pk).update(status=TunnelChange.Status.PENDING)
    change.steps.update(status=TunnelChangeStep.Status.PENDING)
    tunnel_change_run(change.pk)
    assert [r["hostname"] for r in _config(synced, remote)].count("again.example.com") == 1
    assert len([r for r in synced.store.list("dns_record") if r["name"] == "again.example.com"]) == 1


def test_create_refuses_to_adopt_an_older_tunnel_of_the_same_name(operator, synced, django_capture_on_commit_callbacks):
    from dashboard.requestinfo import RequestOrigin

    taken = Tunnel.objects.order_by("name").first()
    taken_name = taken.name
    # Gatehouse has not seen it (deleted locally), but Cloudflare still has it.
    taken.delete()
    with django_capture_on_commit_callbacks(execute=True):
        change = services.tunnel_create(actor=operator, name=taken_name, request_origin=RequestOrigin())
    change.refresh_from_db()
    assert change.status == TunnelChange.Status.FAILED
    assert "already exists at Cloudflare" in change.reason
    assert change.token_ciphertext == ""


def test_token_page_is_never_cached(operator_client, synced, run):
    response = run(operator_client, reverse("tunnels:tunnel_create"), {"name": "cache-me-not"})
    page = operator_client.get(response["Location"])
    assert "no-store" in page["Cache-Control"]
