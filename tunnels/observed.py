"""When Gatehouse observed the account: the spans of time its sync passes covered (the rule: tunnels/uptime.py)."""

from datetime import datetime, timedelta

from django.conf import settings

from tunnels.models import ObservedSpan


def gap() -> timedelta:
    """How far apart two passes may be and still observe the time between them."""
    return timedelta(seconds=max(3 * settings.GATEHOUSE_TUNNEL_SYNC_SECONDS, 120))


def observe(at: datetime) -> None:
    """A pass read the whole tunnel list at `at`: extend the latest observed span, or open a new one."""
    latest = ObservedSpan.objects.order_by("-end").first()
    if latest is not None and latest.start <= at and at - latest.end <= gap():
        if at > latest.end:
            ObservedSpan.objects.filter(pk=latest.pk).update(end=at)
    else:
        ObservedSpan.objects.create(start=at, end=at)


def spans(start: datetime, now: datetime) -> list[tuple[datetime, datetime]]:
    """The observed spans that reach into [start, now]; the latest runs until now while passes keep coming."""
    rows = list(
        ObservedSpan.objects.filter(end__gte=start, start__lte=now).order_by("start").values_list("start", "end")
    )
    if rows and now - rows[-1][1] <= gap():
        rows[-1] = (rows[-1][0], now)
    return rows


def current_start(now: datetime) -> datetime | None:
    """When the observed span that runs until now began; None when passes have stopped coming."""
    current = spans(now - gap(), now)
    if not current or current[-1][1] < now:
        return None
    return current[-1][0]
