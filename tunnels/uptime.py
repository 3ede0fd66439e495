"""Uptime from status changes, over the time Gatehouse actually observed: by window, by day and by month.

What counts as observed (the rule every figure here follows):

- Gatehouse observes the account when a sync pass reads the whole tunnel list (`SyncPass.tunnels_seen` set),
  and when a pass runs while Cloudflare's push events are connected and arriving (`tunnels.push.trusted`): a
  change then arrives as an event, so the pass need not read the list. A pass that fails before that observes
  nothing.
- Two observing passes at most `tunnels.observed.gap()` apart (three sync intervals, at least two minutes)
  observe the time between them: a status change in between carries Cloudflare's own timestamp, so nothing
  goes unseen. Passes further apart leave the time between them unobserved. Each pass extends the latest
  `ObservedSpan` or opens a new one.
- The latest span covers until now while its last pass is within the gap, so an incident still going on counts
  until now; when passes stop, the time since the last one is unobserved.
- A tunnel is observed only within those spans, from when a pass first saw it (`first_seen_at`) until it was
  deleted.

Unobserved time is unknown: never "All good", never up and never down. A tunnel is up while healthy or degraded
(it serves traffic) and down while down; observed time spent inactive (never run, or no connector configured)
counts neither way. Percentages are of the observed up and down time, and say how much that was.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

UP = ("healthy", "degraded")

Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    status: str

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def clip(observed: Iterable[Interval], start: datetime, end: datetime) -> list[Interval]:
    """The observed intervals within [start, end), sorted and merged."""
    merged: list[list[datetime]] = []
    for lo, hi in sorted((max(a, start), min(b, end)) for a, b in observed):
        if hi <= lo:
            continue
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def spans(
    changes: Sequence[tuple[datetime, str]], start: datetime, end: datetime, *, observed: Iterable[Interval]
) -> list[Span]:
    """The timeline of `changes` (ascending (at, new_status)) within [start, end), observed parts only.

    The status before the first change is unknown, so that time is left out too.
    """
    seen = clip(observed, start, end)
    result = []
    for i, (at, status) in enumerate(changes):
        until = changes[i + 1][0] if i + 1 < len(changes) else end
        for lo, hi in seen:
            a, b = max(at, lo), min(until, hi)
            if b > a:
                result.append(Span(a, b, status))
    return result


@dataclass
class Tally:
    window: float = 0.0
    observed: float = 0.0
    up: float = 0.0
    degraded: float = 0.0
    down: float = 0.0
    incidents: int = 0

    def add(self, span: Span) -> None:
        if span.status in UP:
            self.up += span.seconds
            if span.status == "degraded":
                self.degraded += span.seconds
        elif span.status == "down":
            self.down += span.seconds

    @property
    def known(self) -> float:
        """Observed time spent up or down: what the percentage is of."""
        return self.up + self.down

    @property
    def unobserved(self) -> float:
        return max(0.0, self.window - self.observed)

    @property
    def percent(self) -> float | None:
        return None if not self.known else 100.0 * self.up / self.known

    @property
    def text(self) -> str:
        """'99.20 % of 6 d 4 h observed', and how much of the window Gatehouse did not observe."""
        if self.percent is None:
            return "not observed" if not self.observed else "not running while observed"
        line = f"{self.percent:.2f} % of {duration(self.known)} observed"
        if self.unobserved >= 60:
            line += f"; {duration(self.unobserved)} not observed"
        return line


def tally(
    changes: Sequence[tuple[datetime, str]], start: datetime, end: datetime, *, observed: Iterable[Interval]
) -> Tally:
    seen = clip(observed, start, end)
    result = Tally(
        window=max(0.0, (end - start).total_seconds()), observed=sum((b - a).total_seconds() for a, b in seen)
    )
    parts = spans(changes, start, end, observed=seen)
    for span in parts:
        result.add(span)
    result.incidents = _incidents(changes, parts)
    return result


def _incidents(changes: Sequence[tuple[datetime, str]], parts: list[Span]) -> int:
    """Outages (consecutive down rows are one) with observed down time in the window, an ongoing one included."""
    runs: list[list[Any]] = []  # [began, ended] of each outage, ended None while it goes on
    previous = None
    for at, status in changes:
        if status == "down" and previous != "down":
            runs.append([at, None])
        if status != "down" and previous == "down":
            runs[-1][1] = at
        previous = status
    down = [s for s in parts if s.status == "down"]
    return sum(1 for begin, finish in runs if any(s.end > begin and (finish is None or s.start < finish) for s in down))


WINDOWS = (("24h", 1), ("7d", 7), ("30d", 30), ("90d", 90))


def uptime_windows(
    changes: Sequence[tuple[datetime, str]], now: datetime, *, observed: Iterable[Interval]
) -> dict[str, Tally]:
    seen = list(observed)
    return {label: tally(changes, now - timedelta(days=days), now, observed=seen) for label, days in WINDOWS}


@dataclass
class DayCell:
    day: date
    tally: Tally = field(default_factory=Tally)

    @property
    def colour(self) -> str:
        t = self.tally
        if not t.known:
            return "grey"
        if t.down / t.known >= 0.01:
            return "red"
        if t.down or t.degraded / t.known >= 0.01:
            return "amber"
        return "green"

    @property
    def title(self) -> str:
        t = self.tally
        if not t.observed:
            return f"{self.day:%Y-%m-%d}: not observed"
        if not t.known:
            return f"{self.day:%Y-%m-%d}: not running while observed"
        line = (
            f"{self.day:%Y-%m-%d}: {t.percent:.2f}% up of {duration(t.known)} observed · down {_minutes(t.down)}"
            f" · degraded {_minutes(t.degraded)}"
        )
        if t.unobserved >= 60:
            line += f" · {duration(t.unobserved)} not observed"
        return line


def day_cells(
    changes: Sequence[tuple[datetime, str]], now: datetime, *, observed: Iterable[Interval], days: int = 90
) -> list[DayCell]:
    """One cell per UTC day, oldest first, ending today."""
    seen = list(observed)
    today = now.astimezone(UTC).date()
    cells = []
    for offset in range(days - 1, -1, -1):
        day = today - timedelta(days=offset)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        cells.append(DayCell(day, tally(changes, start, min(start + timedelta(days=1), now), observed=seen)))
    return cells


@dataclass(frozen=True)
class Month:
    label: str
    tally: Tally

    @property
    def text(self) -> str:
        t = self.tally
        if not t.observed:
            return "Not observed"
        missing = f"; {duration(t.unobserved)} not observed" if t.unobserved >= 60 else ""
        if t.incidents or t.down:
            noun = "incident" if t.incidents == 1 else "incidents"
            return f"{t.incidents} {noun}, {_minutes(t.down)} down{missing}"
        if missing:
            return f"No downtime in {duration(t.observed)} observed{missing}"
        return "All good"


def monthly(
    changes: Sequence[tuple[datetime, str]], now: datetime, *, observed: Iterable[Interval], months: int = 3
) -> list[Month]:
    """Newest month first; the current month runs until now."""
    seen = list(observed)
    now = now.astimezone(UTC)
    result = []
    year, month = now.year, now.month
    for _ in range(months):
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
        result.append(Month(f"{start:%B %Y}", tally(changes, start, min(end, now), observed=seen)))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return result


def _minutes(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def duration(seconds: float) -> str:
    """A length of time in its two largest units: '6 d 4 h', '3 h 12 min', '45 min'."""
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def as_pairs(rows: Iterable) -> list[tuple[datetime, str]]:
    return [(row.at, row.new_status) for row in rows]


def tunnel_observed(
    spans_observed: Iterable[Interval], *, first_seen: datetime, deleted: datetime | None, now: datetime
) -> list[Interval]:
    """The account's observed spans narrowed to the tunnel's own life in Gatehouse."""
    return clip(spans_observed, first_seen, min(deleted, now) if deleted else now)
