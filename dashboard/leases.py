"""Leases kept alive by the process that holds them, so that a dead worker's work is taken over within seconds.

A row that can be "running" (an operation, a sync pass, a Logpush pass, an inventory pass) carries `lease_until`.
The process working on it renews the lease from a thread of its own every third of its length while the work
goes on (`Renewal`); a worker that is killed stops renewing, and its lease lapses a few seconds later. What
happens then is the kind's own: an operation is taken over by the next worker (dashboard/operations.py), a pass
is ended with its reason by `passes_end_lapsed` (the next pass takes up what it left).
"""

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)


def lease_seconds() -> float:
    """How long a lease lasts without renewal: how long a dead worker's work waits before it is taken over."""
    return float(settings.GATEHOUSE_LEASE_SECONDS)


class Renewal:
    """While the `with` block runs, call `renew(until)` every third of `seconds` from a thread of its own, with
    `until` the new end of the lease; `renew` answers False once the lease is no longer this process's (then the
    renewal stops, and `lost` says so)."""

    def __init__(self, renew: Callable[[datetime], bool], *, seconds: float | None = None):
        self.renew = renew
        self.seconds = seconds if seconds is not None else lease_seconds()
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-renewal", daemon=True)

    def __enter__(self) -> "Renewal":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                if not self.renew(timezone.now() + timedelta(seconds=self.seconds)):
                    self.lost = True
                    return
            except Exception as exc:
                # The next beat tries again; a lease that lapses meanwhile is taken over, which steps allow, and the
                # worker that held it then records nothing of its step (dashboard/operations.py).
                log.warning("could not renew a lease: %s", type(exc).__name__)
            finally:
                # This thread's own connection is closed between beats, so that none is open when the process
                # forks (the Logpush pass forks its readers) and none outlives the work.
                connections.close_all()


def passes_end_lapsed(*, now: datetime | None = None) -> int:
    """End the passes whose worker stopped renewing their lease: finished when last seen alive, with the reason.
    Passes from before leases (none set) count as lapsed an hour after they started. How many were ended."""
    now = now or timezone.now()
    ended = 0
    for path in settings.GATEHOUSE_LEASED_PASSES:
        model: Any = import_string(path)  # a pass model with a lease (LAPSED_REASON, lease_until, error)
        lapsed = model.objects.filter(
            Q(lease_until__lt=now) | Q(lease_until__isnull=True, started_at__lt=now - timedelta(hours=1)),
            finished_at__isnull=True,
        )
        # A kind of pass may know it is still being worked on whatever its lease says (Logpush batches still
        # holding their objects' claims).
        if getattr(model, "work_in_flight", lambda now: False)(now):
            continue
        for row in lapsed.only("pk", "lease_until", "started_at"):
            last_seen = row.lease_until - timedelta(seconds=lease_seconds()) if row.lease_until else row.started_at
            reason = model.LAPSED_REASON[: model._meta.get_field("error").max_length]
            ended += lapsed.filter(pk=row.pk).update(finished_at=max(last_seen, row.started_at), error=reason)
    if ended:
        log.warning("%d pass(es) ended: their worker stopped", ended)
    return ended
