"""Is Gatehouse up, and can it do its work: the reads behind /healthz, /readyz and `manage.py health`.

Each check answers with a word or two and never with what it connected to (a broker URL carries a password).
"""

from dataclasses import dataclass

from django.conf import settings
from django.db import connection
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


def check_broker() -> Check:
    try:
        options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
        transport = getattr(settings, "CELERY_BROKER_TRANSPORT", None)
        with Connection(
            settings.CELERY_BROKER_URL, transport=transport, connect_timeout=2, transport_options=options
        ) as broker:
            broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
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
    return {name: CHECKS[name]() for name in names or list(CHECKS)}
