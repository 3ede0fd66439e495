"""Uptime from status changes: the time a tunnel spent in each status, by window, by day and by month.

A tunnel is up while healthy or degraded (it serves traffic) and down while down. Time before Gatehouse first saw
it and time spent inactive (never run, or no connector configured) count neither way.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

UP = ("healthy", "degraded")


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    status: str

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def spans(changes: Sequence[tuple[datetime, str]], start: datetime, end: datetime) -> list[Span]:
    """Cut the timeline of `changes` (ascending (at, new_status)) to [start, end).

    The status before the first change is unknown, so that time is left out.
    """
    result = []
    for i, (at, status) in enumerate(changes):
        until = changes[i + 1][0] if i + 1 < len(changes) else end
        lo, hi = max(at, start), min(until, end)
        if hi > lo:
            result.append(Span(lo, hi, status))
    return result


@dataclass
class Tally:
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
        return self.up + self.down

    @property
    def percent(self) -> float | None:
        return None if not self.known else 100.0 * self.up / self.known


def tally(changes: Sequence[tuple[datetime, str]], start: datetime, end: datetime) -> Tally:
    result = Tally()
    for span in spans(changes, start, end):
        result.add(span)
    previous = None
    for at, status in changes:
        if status == "down" and previous != "down" and start <= at < end:
            result.incidents += 1
        previous = status
    return result


def uptime_windows(changes: Sequence[tuple[datetime, str]], now: datetime) -> dict[str, float | None]:
    return {
        label: tally(changes, now - timedelta(days=days), now).percent
        for label, days in (("24h", 1), ("7d", 7), ("30d", 30), ("90d", 90))
    }


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
        if not t.known:
            return f"{self.day:%Y-%m-%d}: no data"
        return f"{self.day:%Y-%m-%d}: {t.percent:.2f}% up · down {_minutes(t.down)} · degraded {_minutes(t.degraded)}"


def day_cells(changes: Sequence[tuple[datetime, str]], now: datetime, days: int = 90) -> list[DayCell]:
    """One cell per UTC day, oldest first, ending today."""
    today = now.astimezone(UTC).date()
    cells = []
    for offset in range(days - 1, -1, -1):
        day = today - timedelta(days=offset)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        cells.append(DayCell(day, tally(changes, start, min(start + timedelta(days=1), now))))
    return cells


@dataclass(frozen=True)
class Month:
    label: str
    incidents: int
    down_seconds: float

    @property
    def text(self) -> str:
        if not self.incidents and not self.down_seconds:
            return "All good"
        noun = "incident" if self.incidents == 1 else "incidents"
        return f"{self.incidents} {noun}, {_minutes(self.down_seconds)}"


def monthly(changes: Sequence[tuple[datetime, str]], now: datetime, months: int = 3) -> list[Month]:
    """Newest month first."""
    now = now.astimezone(UTC)
    result = []
    year, month = now.year, now.month
    for _ in range(months):
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
        t = tally(changes, start, min(end, now))
        result.append(Month(f"{start:%B %Y}", t.incidents, t.down))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return result


def _minutes(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def as_pairs(rows: Iterable) -> list[tuple[datetime, str]]:
    return [(row.at, row.new_status) for row in rows]
