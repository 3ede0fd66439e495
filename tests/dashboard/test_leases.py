"""Leases renewed by the process that holds them, and passes ended when their worker stops renewing."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard import tasks
from dashboard.leases import Renewal
from discovery.models import IngestRun, InventoryRun
from tunnels.models import SyncPass


@pytest.mark.django_db(transaction=True)
def test_a_renewal_moves_the_lease_on_while_the_work_goes_on_and_stops_with_it():
    started = timezone.now()
    record = SyncPass.objects.create(lease_until=started + timedelta(seconds=0.6))

    def renew(until):
        return bool(SyncPass.objects.filter(pk=record.pk).update(lease_until=until))

    with Renewal(renew, seconds=0.6) as renewal:
        time.sleep(1.5)
    record.refresh_from_db()
    assert record.lease_until > started + timedelta(seconds=1.2)
    assert not renewal.lost
    after = record.lease_until
    time.sleep(0.5)
    record.refresh_from_db()
    assert record.lease_until == after


@pytest.mark.django_db(transaction=True)
def test_a_renewal_stops_once_the_lease_is_no_longer_this_process():
    beats = []

    def renew(until):
        beats.append(until)
        return False

    with Renewal(renew, seconds=0.3) as renewal:
        time.sleep(0.6)
    assert renewal.lost
    assert len(beats) == 1


def test_the_resume_pass_ends_the_passes_whose_worker_stopped_and_leaves_the_others(db, settings):
    settings.GATEHOUSE_LEASE_SECONDS = 15
    now = timezone.now()
    lapsed_sync = SyncPass.objects.create(started_at=now - timedelta(minutes=2), lease_until=now - timedelta(seconds=1))
    live_sync = SyncPass.objects.create(started_at=now - timedelta(minutes=2), lease_until=now + timedelta(seconds=10))
    done_sync = SyncPass.objects.create(
        started_at=now - timedelta(minutes=2), finished_at=now - timedelta(minutes=1), lease_until=None
    )
    # A pass from before leases, never finished.
    old_ingest = IngestRun.objects.create(source="s3://b/p", started_at=now - timedelta(hours=2))
    young_ingest = IngestRun.objects.create(source="s3://b/p", started_at=now - timedelta(minutes=5))
    lapsed_inventory = InventoryRun.objects.create(lease_until=now - timedelta(seconds=3))

    tasks.operations_resume()

    for row in (lapsed_sync, live_sync, done_sync, old_ingest, young_ingest, lapsed_inventory):
        row.refresh_from_db()
    assert lapsed_sync.finished_at == now - timedelta(seconds=16)
    assert lapsed_sync.error == SyncPass.LAPSED_REASON
    assert (live_sync.finished_at, live_sync.error) == (None, "")
    assert (done_sync.finished_at, done_sync.error) == (now - timedelta(minutes=1), "")
    assert old_ingest.finished_at == old_ingest.started_at and old_ingest.error == IngestRun.LAPSED_REASON
    assert (young_ingest.finished_at, young_ingest.error) == (None, "")
    assert lapsed_inventory.finished_at is not None and lapsed_inventory.error == InventoryRun.LAPSED_REASON
