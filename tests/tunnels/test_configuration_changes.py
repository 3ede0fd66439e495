"""Hostname changes write a tunnel's whole configuration at Cloudflare: what Gatehouse does not manage stays as it was,
a change someone makes meanwhile is kept, and two changes to one tunnel never interleave."""

import copy
import threading

import cloudflare
import httpx
import pytest
from django.db import connection
from django.urls import reverse

from cloudflare_sim import faults
from tunnels import changes
from tunnels.models import PublicHostname, Tunnel, TunnelChange, Zone
from tunnels.tasks import tunnel_change_run

CATCH_ALL = {"hostname": "*", "service": "http_status:404", "originRequest": {"noTLSVerify": True}}


def _stored(sim, tunnel) -> dict:
    return sim.store.get("tunnel_config", str(tunnel.cf_id), sim.account_id)


def _config_path(sim, tunnel) -> str:
    return f"/client/v4/accounts/{sim.account_id}/cfd_tunnel/{tunnel.cf_id}/configurations"


def _sdk(sim) -> cloudflare.Cloudflare:
    """Someone else's client: the official SDK straight on the simulator, outside Gatehouse and its budget."""
    return cloudflare.Cloudflare(
        api_token=sim.app.token,
        base_url="http://sim.test/client/v4",
        http_client=httpx.Client(transport=httpx.WSGITransport(app=sim.app)),
        max_retries=0,
    )


class Watch:
    """The simulator as served to Gatehouse, noting each call on one tunnel's configuration, in order.

    `after_first_read` runs once, right after the simulator answered Gatehouse's first read of it.
    """

    def __init__(self, sim, tunnel, after_first_read=None):
        self.app, self.path, self.after_first_read = sim.app, _config_path(sim, tunnel), after_first_read
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        answer = self.app(environ, start_response)
        if environ["PATH_INFO"] == self.path:
            with self.lock:
                self.calls.append(environ["REQUEST_METHOD"])
                first_read = self.calls == ["GET"]
            if first_read and self.after_first_read:
                self.after_first_read()
        return answer


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    def post(client, url, data):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, data)

    return post


@pytest.fixture
def remote(synced):
    return Tunnel.objects.filter(remote_config=True, hostname_count__gt=0).order_by("name").first()


@pytest.fixture
def admin_settings(synced, remote):
    """An admin set things at Cloudflare that Gatehouse has no form for: they must survive Gatehouse's writes."""
    doc = _stored(synced, remote)
    ingress = doc["config"]["ingress"]
    doc["config"] = {
        "originRequest": {"connectTimeout": 30, "access": {"required": True, "teamName": "corp", "audTag": ["aud1"]}},
        "warp-routing": {"enabled": True},
        "x-admin-note": {"owner": "network team"},
        "ingress": [
            {
                "hostname": "api.example.com",
                "path": "/v2/*",
                "service": "https://api.internal:8443",
                "originRequest": {"noTLSVerify": True, "httpHostHeader": "api.internal"},
                "x-rule-note": "pinned",
            },
            *ingress[:-1],
            CATCH_ALL,
        ],
    }
    synced.store.put("tunnel_config", doc, synced.account_id, parent=str(remote.cf_id))
    return copy.deepcopy(doc["config"])


def test_adding_then_removing_a_hostname_leaves_everything_else_as_the_admin_set_it(
    operator_client, remote, synced, admin_settings, run
):
    response = run(
        operator_client,
        reverse("tunnels:hostname_add", args=[remote.cf_id]),
        {"hostname": "new.example.com", "service": "http://new.internal:80"},
    )
    page = operator_client.get(response["Location"]).content.decode()
    assert "Succeeded" in page and "new.example.com" in page
    added = _stored(synced, remote)["config"]
    assert {k: v for k, v in added.items() if k != "ingress"} == {
        k: v for k, v in admin_settings.items() if k != "ingress"
    }
    assert added["ingress"] == [
        *admin_settings["ingress"][:-1],
        {"hostname": "new.example.com", "service": "http://new.internal:80"},
        CATCH_ALL,
    ]
    assert PublicHostname.objects.filter(tunnel=remote, hostname="api.example.com", path="/v2/*").exists()

    run(operator_client, reverse("tunnels:hostname_remove", args=[remote.cf_id]), {"hostname": "new.example.com"})
    assert TunnelChange.objects.filter(status=TunnelChange.Status.SUCCEEDED).count() == 2
    assert _stored(synced, remote)["config"] == admin_settings


def test_a_change_made_at_cloudflare_between_read_and_write_is_kept_and_ours_applied_on_top(
    operator_client, remote, synced, admin_settings, run
):
    version = _stored(synced, remote)["version"]
    someone = {"hostname": "someone.example.com", "service": "http://someone.internal:9000"}

    def someone_edits():
        configurations = _sdk(synced).zero_trust.tunnels.cloudflared.configurations
        config = configurations.get(str(remote.cf_id), account_id=synced.account_id).config.to_dict(mode="json")
        config["ingress"].insert(0, someone)
        config["originRequest"]["connectTimeout"] = 5
        configurations.update(str(remote.cf_id), account_id=synced.account_id, extra_body={"config": config})

    watch = Watch(synced, remote, after_first_read=someone_edits)
    synced.server.set_app(watch)
    run(
        operator_client,
        reverse("tunnels:hostname_add", args=[remote.cf_id]),
        {"hostname": "mine.example.com", "service": "http://mine.internal:80"},
    )
    change = TunnelChange.objects.get()
    assert change.status == TunnelChange.Status.SUCCEEDED, change.reason
    # Read, read again (someone's version), read to check, then one write on top of theirs.
    assert watch.calls == ["GET", "GET", "GET", "PUT"]
    stored = _stored(synced, remote)
    assert stored["version"] == version + 2 == change.result["config_version"]
    assert stored["config"]["originRequest"]["connectTimeout"] == 5
    assert stored["config"]["ingress"] == [
        someone,
        *admin_settings["ingress"][:-1],
        {"hostname": "mine.example.com", "service": "http://mine.internal:80"},
        CATCH_ALL,
    ]
    hostnames = set(PublicHostname.objects.filter(tunnel=remote).values_list("hostname", flat=True))
    assert {"someone.example.com", "mine.example.com"} <= hostnames


@pytest.mark.django_db(transaction=True)
def test_two_changes_to_one_tunnel_run_one_after_the_other(operator, remote, synced):
    # Slow reads make two unguarded changes overlap: both would read before either wrote.
    faults.save(
        synced.store,
        {"rules": [{"endpoint": "GET /accounts/*/cfd_tunnel/*/configurations", "latency_ms": 300}]},
    )
    watch = Watch(synced, remote)
    synced.server.set_app(watch)
    zone = Zone.objects.get(name="example.com").cf_id
    two = [
        TunnelChange.objects.create(
            kind=TunnelChange.Kind.HOSTNAME_ADD,
            tunnel=remote,
            actor=operator,
            params={"hostname": f"{name}.example.com", "service": f"http://{name}.internal:80", "zone": zone},
        )
        for name in ("first", "second")
    ]
    for change in two:
        changes.TunnelChanges().create_steps(change, [(change.kind, change.get_kind_display())])

    def work(change):
        try:
            tunnel_change_run(change.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(change,)) for change in two]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [c.status for c in TunnelChange.objects.order_by("pk")] == [TunnelChange.Status.SUCCEEDED] * 2
    assert watch.calls == ["GET", "GET", "PUT", "GET", "GET", "PUT"]
    hostnames = [r["hostname"] for r in _stored(synced, remote)["config"]["ingress"]]
    assert "first.example.com" in hostnames and "second.example.com" in hostnames


def test_a_change_asked_while_another_to_its_tunnel_runs_waits_its_turn_and_says_so(
    operator, operator_client, remote, synced, django_capture_on_commit_callbacks
):
    from dashboard.requestinfo import RequestOrigin
    from tunnels import services

    version = _stored(synced, remote)["version"]
    # Two changes asked in one breath; neither task has run yet.
    first, later = (
        services.hostname_add(
            actor=operator, tunnel=remote, hostname=f"{name}.example.com", service=f"http://{name}.internal:80",
            request_origin=RequestOrigin(),
        )
        for name in ("first", "later")
    )  # fmt: skip
    tunnel_change_run(later.pk)
    later.refresh_from_db()
    assert later.status == TunnelChange.Status.PENDING
    assert later.steps.get().error == f"Waiting for the change asked before it (add public hostname: {first.summary})."
    page = operator_client.get(reverse("tunnels:change_detail", args=[later.public_id])).content.decode()
    assert "Waiting for the change asked before it" in page
    assert _stored(synced, remote)["version"] == version

    # The first change hands over as it ends: the later one runs without anyone sending it again.
    with django_capture_on_commit_callbacks(execute=True):
        tunnel_change_run(first.pk)
    assert [c.status for c in TunnelChange.objects.order_by("pk")] == [TunnelChange.Status.SUCCEEDED] * 2
    hostnames = [r["hostname"] for r in _stored(synced, remote)["config"]["ingress"]]
    assert hostnames.index("first.example.com") < hostnames.index("later.example.com")
    assert TunnelChange.objects.get(pk=later.pk).steps.get().error == ""
