"""Running a transaction again when PostgreSQL aborted it to break a deadlock.

Workers that lock the same rows take them in one order (id order for rows that exist, key order for rows they
insert), but a deadlock can still form among three or more transactions, for example when rows another worker
committed meanwhile join a second lock pass. PostgreSQL then aborts one of them, and its documented remedy is to
run that transaction again.
"""

import logging
import random
import time
from collections.abc import Callable

from django.db import OperationalError, connection

log = logging.getLogger(__name__)

DEADLOCK_ATTEMPTS = 3
DEADLOCK_DETECTED = "40P01"


def deadlock_victim(exc: OperationalError) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == DEADLOCK_DETECTED


def again_on_deadlock[T](work: Callable[[], T], *, what: str) -> T:
    """`work()`, which must be one whole transaction, run again (up to DEADLOCK_ATTEMPTS in all) when it is a
    deadlock's victim; any other error, or a deadlock inside a caller's transaction, is raised at once."""
    attempt = 1
    while True:
        try:
            return work()
        except OperationalError as exc:
            if not deadlock_victim(exc) or attempt == DEADLOCK_ATTEMPTS or connection.in_atomic_block:
                raise
        attempt += 1
        log.warning("%s was chosen to break a deadlock; running it again (attempt %d)", what, attempt)
        # A random pause, so that the transactions that met do not meet again in step.
        time.sleep(random.uniform(0.01, 0.1) * attempt)  # noqa: S311
