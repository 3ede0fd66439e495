"""Which objects a run writes: their time windows, record counts and keys, following a working day's traffic."""

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from cloudflare_sim.logpush.population import seeded_rng

# Logpush's own cap on records per object (max_upload_records): a busier window becomes several objects.
MAX_OBJECT_RECORDS = 100_000


@dataclass(frozen=True)
class ObjectPlan:
    start: dt.datetime
    end: dt.datetime
    records: int
    public: int
    malformed: int
    suffix: str

    def key(self, prefix: str) -> str:
        name = f"{_stamp(self.start)}_{_stamp(self.end)}_{self.suffix}.log.gz"
        folder = self.start.strftime("%Y%m%d")
        return f"{prefix}/{folder}/{name}" if prefix else f"{folder}/{name}"


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _diurnal(moment: dt.datetime) -> float:
    """Relative traffic at a moment: a working-day peak across Europe and the Americas, quiet weekends."""
    hour = moment.hour + moment.minute / 60
    level = 0.25 + math.exp(-(((hour - 13.5) / 4.5) ** 2))
    return level * (0.4 if moment.weekday() >= 5 else 1.0)


def _apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to integer weights, exactly (largest remainder, ties to the earliest)."""
    scale = sum(weights)
    if scale == 0:
        return [0] * len(weights)
    shares = [total * weight // scale for weight in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % scale), i))
    for index in remainders[: total - sum(shares)]:
        shares[index] += 1
    return shares


def plan_objects(
    *,
    records: int,
    hours: float,
    seed: int,
    end: dt.datetime,
    objects_per_hour: int = 12,
    public_share: float = 0.01,
    malformed_share: float = 0.005,
) -> list[ObjectPlan]:
    """The objects a run writes: their time windows, record counts and key suffixes, in order."""
    _check_arguments(records, hours, objects_per_hour, public_share, malformed_share)
    rng = seeded_rng(seed, "plan")
    keys_rng = seeded_rng(seed, "keys")
    end = utc(end)
    span = max(1, round(hours * 3600))
    start = end - dt.timedelta(seconds=span)
    windows = max(1, round(hours * objects_per_hour))
    bounds = [start + dt.timedelta(seconds=span * i // windows) for i in range(windows + 1)]

    weights = [
        int(1_000_000 * _diurnal(bounds[i] + (bounds[i + 1] - bounds[i]) / 2) * rng.uniform(0.85, 1.15))
        for i in range(windows)
    ]
    counts = _apportion(records, weights)
    # A window busier than Logpush's per-object cap is delivered as several objects covering slices of it.
    pieces: list[tuple[dt.datetime, dt.datetime, int]] = []
    for i, count in enumerate(counts):
        parts = max(1, -(-count // MAX_OBJECT_RECORDS))
        length = (bounds[i + 1] - bounds[i]).total_seconds()
        for part, share in enumerate(_apportion(count, [1] * parts)):
            lo = bounds[i] + dt.timedelta(seconds=int(length * part // parts))
            hi = bounds[i] + dt.timedelta(seconds=int(length * (part + 1) // parts))
            pieces.append((lo, hi, share))

    sizes = [count for _, _, count in pieces]
    public_total = round(records * public_share)
    malformed_total = min(records - public_total, round(records * malformed_share))
    public = _apportion(public_total, sizes)
    malformed = _apportion(malformed_total, [size - pub for size, pub in zip(sizes, public, strict=True)])
    return [
        ObjectPlan(lo, hi, count, pub, bad, f"{keys_rng.getrandbits(32):08x}")
        for (lo, hi, count), pub, bad in zip(pieces, public, malformed, strict=True)
    ]


def _check_arguments(
    records: int, hours: float, objects_per_hour: int, public_share: float, malformed_share: float
) -> None:
    if records < 0:
        raise ValueError("records must be zero or more")
    if not hours > 0:
        raise ValueError("hours must be more than zero")
    if objects_per_hour < 1:
        raise ValueError("objects_per_hour must be at least 1")
    if not (0 <= public_share <= 1 and 0 <= malformed_share <= 1 and public_share + malformed_share <= 1):
        raise ValueError("public_share and malformed_share must be between 0 and 1 and add up to at most 1")


def utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC, microsecond=0)
    return moment.astimezone(dt.UTC).replace(microsecond=0)
