"""Only observed time counts: first picture, lazy configurations, uptime on the page, and the alerts' grace."""

import time
from datetime import timedelta

from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from alerts.models import Alert
from cloudflare_sim import control
from tunnels import sync
from tunnels.models import ObservedSpan, PublicHostname, StatusChange, Tunnel
from tunnels.services import tunnel_alerts_evaluate


def _watched_longer(delta: timedelta) -> None:
    """As if the passes so far had run without a break for `delta` more, and had seen every tunnel that early."""
    ObservedSpan.objects.update(start=F("start") - delta)
    Tunnel.objects.update(first_seen_at=F("first_seen_at") - delta)


def _open_alert(tunnel):
    return Alert.objects.filter(target_id=str(tunnel.cf_id), state=Alert.State.OPEN).first()


# --- What counts as observed ---------------------------------------------------------------------------------


def test_each_pass_extends_the_observed_span_and_a_break_opens_a_new_one(synced, db):
    assert ObservedSpan.objects.count() == 1
    sync.sync_pass()
    span = ObservedSpan.objects.get()
    assert span.end > span.start
    # The passes stopped for an hour.
    ObservedSpan.objects.update(start=F("start") - timedelta(hours=1), end=F("end") - timedelta(hours=1))
    sync.sync_pass()
    first, second = ObservedSpan.objects.order_by("start")
    assert second.start == second.end and second.start - first.end > timedelta(minutes=50)


def test_a_pass_that_could_not_read_the_list_observes_nothing(synced, db):
    from cloudflare_sim import faults

    ends = list(ObservedSpan.objects.values_list("end", flat=True))
    faults.save(synced.store, {"rules": [{"endpoint": "GET /accounts/{account_id}/cfd_tunnel", "error_rate": 1}]})
    record = sync.sync_pass()
    assert record.tunnels_seen == 0 and not record.complete
    assert list(ObservedSpan.objects.values_list("end", flat=True)) == ends


def test_the_tunnel_page_says_how_much_was_observed_and_never_all_good_for_unobserved_time(viewer_client, synced):
    tunnel = Tunnel.objects.filter(status=Tunnel.Status.HEALTHY).order_by("name").first()
    now = timezone.now()
    # Cloudflare reports it serving for 60 days; Gatehouse first saw it 2 days ago and has watched since.
    StatusChange.objects.filter(tunnel=tunnel).update(at=now - timedelta(days=60))
    Tunnel.objects.filter(pk=tunnel.pk).update(first_seen_at=now - timedelta(days=2))
    ObservedSpan.objects.update(start=now - timedelta(days=2))
    page = viewer_client.get(reverse("tunnels:tunnel_detail", args=[tunnel.cf_id])).content.decode()
    assert "100.00 % of 2 d 0 h observed; 88 d 0 h not observed" in page
    assert "100.00 % of 1 d 0 h observed" in page
    assert "All good" not in page
    assert "Not observed" in page  # the months before Gatehouse first saw it
    assert "not observed" in page and "counted neither up nor down" in page


# --- A first picture in minutes ------------------------------------------------------------------------------


def test_a_first_pass_on_a_thin_budget_reads_status_of_all_and_unhealthy_connectors_first(
    cloudflare_sim, db, settings, viewer_client
):
    settings.GATEHOUSE_TUNNEL_SYNC_SECONDS = 300
    settings.CLOUDFLARE_RATE_LIMIT = 40  # 10 calls for Gatehouse, 8 of them for background work
    sync.sync_pass()
    live = Tunnel.objects.filter(deleted_at__isnull=True)
    assert live.count() == 24
    unhealthy = live.filter(status__in=[Tunnel.Status.DOWN, Tunnel.Status.DEGRADED])
    assert unhealthy.count() == 3 and not unhealthy.filter(connectors_synced_at__isnull=True).exists()
    assert live.filter(config_synced_at__isnull=False).count() == 0
    read = live.filter(connectors_synced_at__isnull=False).count()
    remote = live.filter(remote_config=True).count()
    page = viewer_client.get(reverse("tunnels:tunnel_list")).content.decode()
    assert f"connectors read for {read} of 24 tunnels" in page
    assert f"configurations for 0 of {remote} remotely managed" in page


def test_configurations_come_in_rotation_once_every_tunnels_connectors_were_read(
    cloudflare_sim, db, settings, viewer_client
):
    settings.GATEHOUSE_TUNNEL_SYNC_SECONDS = 300
    record = sync.sync_pass()
    assert sync.picture_complete()
    remote = Tunnel.objects.filter(remote_config=True)
    assert record.configs_fetched == remote.count() and not remote.filter(config_synced_at__isnull=True).exists()
    assert "Still reading the account" not in viewer_client.get(reverse("tunnels:tunnel_list")).content.decode()


def test_opening_a_tunnels_page_queues_one_read_of_its_configuration(
    viewer_client, synced, django_capture_on_commit_callbacks
):
    tunnel = Tunnel.objects.filter(remote_config=True, hostname_count__gt=0).order_by("name").first()
    hostnames = list(tunnel.hostnames.values_list("hostname", flat=True))
    PublicHostname.objects.filter(tunnel=tunnel).delete()
    Tunnel.objects.filter(pk=tunnel.pk).update(config_synced_at=None, config_version=None, hostname_count=0)
    endpoint = "GET /accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations"
    before = synced.stats()["endpoints"].get(endpoint, {}).get("calls", 0)
    url = reverse("tunnels:tunnel_detail", args=[tunnel.cf_id])
    with django_capture_on_commit_callbacks(execute=True):
        assert "Gatehouse is reading this tunnel's configuration" in viewer_client.get(url).content.decode()
    assert list(tunnel.hostnames.values_list("hostname", flat=True)) == hostnames
    assert synced.stats()["endpoints"][endpoint]["calls"] == before + 1
    # Read now: the next visits (and the page's polling) queue nothing more.
    with django_capture_on_commit_callbacks(execute=True) as queued:
        page = viewer_client.get(url).content.decode()
    assert queued == [] and hostnames[0] in page


# --- Alerts wait their grace in observed time ---------------------------------------------------------------


def test_down_is_alerted_at_first_sight_and_degraded_after_the_grace_since_first_sight(cloudflare_sim, db, settings):
    settings.GATEHOUSE_TUNNEL_SYNC_SECONDS = 300
    settings.GATEHOUSE_TUNNEL_ALERT_GRACE_SECONDS = 600
    sync.sync_pass()
    down = Tunnel.objects.get(status=Tunnel.Status.DOWN)
    degraded = list(Tunnel.objects.filter(status=Tunnel.Status.DEGRADED))
    assert _open_alert(down) is not None
    # Cloudflare's timestamps say they have served for days, but Gatehouse has seen them degraded only now.
    assert all(t.status_since < timezone.now() - timedelta(hours=1) for t in degraded)
    assert not any(_open_alert(t) for t in degraded)
    _watched_longer(timedelta(minutes=11))
    tunnel_alerts_evaluate(now=timezone.now())
    assert all(_open_alert(t) for t in degraded)


def test_a_break_in_the_passes_restarts_the_grace_for_degraded(synced, db, settings):
    settings.GATEHOUSE_TUNNEL_ALERT_GRACE_SECONDS = 600
    tunnel = Tunnel.objects.filter(status=Tunnel.Status.HEALTHY).order_by("name").first()
    control.run_event(synced.store, "degrade", time.time(), tunnel=tunnel.name)
    sync.sync_pass()
    # The passes then stopped for two hours: the degraded status is two hours old, but nobody watched it.
    hours = timedelta(hours=2)
    ObservedSpan.objects.update(start=F("start") - hours, end=F("end") - hours)
    Tunnel.objects.update(first_seen_at=F("first_seen_at") - hours, status_since=F("status_since") - hours)
    sync.sync_pass()
    assert _open_alert(tunnel) is None
    ObservedSpan.objects.filter(end__gte=timezone.now() - timedelta(minutes=1)).update(
        start=F("start") - timedelta(minutes=11)
    )
    tunnel_alerts_evaluate(now=timezone.now())
    assert _open_alert(tunnel) is not None and "degraded" in _open_alert(tunnel).subject


def test_recovery_closes_the_alert_only_after_the_grace(synced, db, settings):
    settings.GATEHOUSE_TUNNEL_ALERT_GRACE_SECONDS = 600
    for event, status in (("tunnel-down", "down"), ("degrade", "degraded")):
        tunnel = Tunnel.objects.filter(status=Tunnel.Status.HEALTHY).order_by("name").first()
        control.run_event(synced.store, event, time.time(), tunnel=tunnel.name)
        sync.sync_pass()
        if status == "degraded":
            _watched_longer(timedelta(minutes=11))
            Tunnel.objects.filter(pk=tunnel.pk).update(status_since=F("status_since") - timedelta(minutes=11))
            tunnel_alerts_evaluate(now=timezone.now())
        alert = _open_alert(tunnel)
        assert alert is not None and status in alert.subject
        control.run_event(synced.store, "recover", time.time(), tunnel=tunnel.name)
        sync.sync_pass()
        tunnel.refresh_from_db()
        assert tunnel.status == Tunnel.Status.HEALTHY and _open_alert(tunnel) is not None
        Tunnel.objects.filter(pk=tunnel.pk).update(status_since=F("status_since") - timedelta(minutes=11))
        _watched_longer(timedelta(minutes=11))
        tunnel_alerts_evaluate(now=timezone.now())
        alert.refresh_from_db()
        assert alert.state == Alert.State.RESOLVED


def test_the_read_a_page_queues_goes_through_when_the_background_budget_is_spent(
    viewer_client, synced, django_capture_on_commit_callbacks
):
    from integrations import cloudflare as cf

    tunnel = Tunnel.objects.filter(remote_config=True, hostname_count__gt=0).order_by("name").first()
    Tunnel.objects.filter(pk=tunnel.pk).update(config_synced_at=None)
    budget = cf.budget()
    while budget.take(cf.Priority.BACKGROUND).granted:
        pass
    with django_capture_on_commit_callbacks(execute=True):
        viewer_client.get(reverse("tunnels:tunnel_detail", args=[tunnel.cf_id]))
    tunnel.refresh_from_db()
    assert tunnel.config_synced_at is not None


def test_passes_recorded_before_the_upgrade_become_observed_spans(db, settings):
    import importlib

    from django.apps import apps

    from tunnels.models import SyncPass

    settings.GATEHOUSE_TUNNEL_SYNC_SECONDS = 30
    migration = importlib.import_module("tunnels.migrations.0003_lifecycle_and_observation")
    start = timezone.now() - timedelta(hours=5)
    minutes = [0, 1, 2, 3, 60, 61, 62]  # a break of 57 minutes after the fourth pass
    for m in minutes:
        SyncPass.objects.create(started_at=start + timedelta(minutes=m), tunnels_seen=10)
    SyncPass.objects.create(started_at=start + timedelta(minutes=90), tunnels_seen=0)  # could not read the list
    migration.spans_from_passes(apps, None)
    assert list(ObservedSpan.objects.order_by("start").values_list("start", "end")) == [
        (start, start + timedelta(minutes=3)),
        (start + timedelta(minutes=60), start + timedelta(minutes=62)),
    ]
