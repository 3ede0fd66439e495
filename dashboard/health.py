"""Is Gatehouse up, and can it do its work: the reads behind /healthz, /readyz and `manage.py health`.

Each check answers with a word or two and never with what it connected to (a broker URL carries a password).
The checks run at once, each in a thread of its own with socket and statement timeouts, and `readiness` answers
within DEADLINE whatever a dependency does: a check still waiting then is reported as failed. /healthz runs none
of them (dashboard.middleware): it says only that the process serves requests.
"""

import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.utils import timezone
from kombu import Connection

from dashboard.models import Heartbeat


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver's error means the same here: not ready
        return Check(False, f"unreachable ({type(exc).__name__})")
    return Check(True, "ok")


# How long /readyz and `manage.py health` wait for all the checks together: inside the 2 s they promise, with room
# for the request itself.
DEADLINE = 1.5
# What one check may spend on a connection or an answer, inside the deadline.
CHECK_TIMEOUT = 1.0


def check_broker() -> Check:
    try:
        options = {
            **getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}),
            # Redis's: without a read timeout, a broker that accepts and never answers holds the check for good.
            "socket_timeout": CHECK_TIMEOUT,
            "socket_connect_timeout": CHECK_TIMEOUT,
        }
        transport = getattr(settings, "CELERY_BROKER_TRANSPORT", None)
        with Connection(
            settings.CELERY_BROKER_URL, transport=transport, connect_timeout=CHECK_TIMEOUT, transport_options=options
        ) as broker:
            broker.ensure_connection(max_retries=0, timeout=CHECK_TIMEOUT)  # type: ignore[arg-type]  # stubs: seconds
    except Exception as exc:  # kombu raises the transport's own errors
        return Check(False, f"unreachable ({type(exc).__name__})")
    return Check(True, "ok")


def heartbeat_limit() -> float:
    """How old the worker's heartbeat may be: three missed beats, and never under a minute."""
    return max(60.0, 3 * settings.GATEHOUSE_HEARTBEAT_SECONDS)


def check_heartbeat() -> Check:
    """A recent heartbeat proves beat scheduled it and a worker ran it."""
    try:
        beat = Heartbeat.objects.filter(name="worker").first()
    except Exception as exc:  # the database check says why
        return Check(False, f"unreadable ({type(exc).__name__})")
    if beat is None:
        return Check(False, "no heartbeat yet")
    age = (timezone.now() - beat.seen_at).total_seconds()
    if age > heartbeat_limit():
        return Check(False, f"last heartbeat {age:.0f} s ago")
    return Check(True, f"{age:.0f} s ago")


def check_cloudflare_budget() -> Check:
    from integrations.cloudflare import budget

    try:
        blocked = budget().blocked_for()
    except Exception as exc:  # the budget's store (Redis or a file) is unreachable
        return Check(False, f"budget unreadable ({type(exc).__name__})")
    if blocked > 0:
        return Check(False, f"blocked for {blocked:.0f} s after a 429")
    return Check(True, "ok")


CHECKS = {
    "database": check_database,
    "broker": check_broker,
    "heartbeat": check_heartbeat,
    "cloudflare_budget": check_cloudflare_budget,
}


def readiness(names: list[str] | None = None) -> dict[str, Check]:
    """Every check named (all by default), run at once; one that has not answered within DEADLINE has failed."""
    names = names or list(CHECKS)
    answers: dict[str, Check] = {}
    threads = [threading.Thread(target=_run, args=(name, answers), daemon=True) for name in names]
    for thread in threads:
        thread.start()
    until = time.monotonic() + DEADLINE
    for thread in threads:
        thread.join(max(0.0, until - time.monotonic()))
    late = Check(False, f"no answer within {DEADLINE:g} s")
    return {name: answers.get(name, late) for name in names}


def _run(name: str, answers: dict[str, Check]) -> None:
    """One check in a thread of its own, on a database connection of its own with timeouts, closed after.

    A thread left waiting past the deadline ends at its own timeouts; it is not waited for.
    """
    database = connections.create_connection(DEFAULT_DB_ALIAS)
    database.settings_dict = {**database.settings_dict, "OPTIONS": _timeouts(database)}
    connections[DEFAULT_DB_ALIAS] = database
    try:
        answers[name] = CHECKS[name]()
    finally:
        database.close()


def _timeouts(database) -> dict:
    """The connection's options with a connect timeout and a statement timeout (or a lock wait) that end a wait
    on a database that does not answer."""
    options = dict(database.settings_dict.get("OPTIONS", {}))
    if database.vendor == "postgresql":
        # libpq counts whole seconds, and takes no fewer than two.
        options["connect_timeout"] = 2
        statement_timeout = f"-c statement_timeout={int(CHECK_TIMEOUT * 1000)}"
        options["options"] = f"{options.get('options', '')} {statement_timeout}".strip()
    elif database.vendor == "sqlite":
        options["timeout"] = CHECK_TIMEOUT
    return options
