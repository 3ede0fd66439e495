from datetime import UTC, datetime, timedelta

from tunnels import uptime

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def at(hours_ago: float) -> datetime:
    return NOW - timedelta(hours=hours_ago)


def test_always_healthy_is_100_percent():
    changes = [(at(24 * 100), "healthy")]
    assert uptime.uptime_windows(changes, NOW) == {"24h": 100.0, "7d": 100.0, "30d": 100.0, "90d": 100.0}


def test_six_hours_down_in_the_last_day_is_75_percent():
    changes = [(at(48), "healthy"), (at(12), "down"), (at(6), "healthy")]
    assert uptime.uptime_windows(changes, NOW)["24h"] == 75.0


def test_degraded_counts_as_up_but_is_reported():
    changes = [(at(48), "healthy"), (at(10), "degraded"), (at(8), "healthy")]
    tally = uptime.tally(changes, at(24), NOW)
    assert tally.percent == 100.0
    assert tally.degraded == 2 * 3600


def test_time_before_first_seen_and_inactive_time_count_neither_way():
    changes = [(at(12), "inactive"), (at(6), "healthy"), (at(3), "down")]
    # Known time is the last 6 hours only: 3 up, 3 down.
    assert uptime.uptime_windows(changes, NOW)["24h"] == 50.0


def test_no_data_is_none_not_zero():
    assert uptime.uptime_windows([], NOW)["24h"] is None


def test_a_flapping_tunnel_counts_each_outage_once():
    changes = [(at(30), "healthy")]
    for i in range(6):  # down for 10 minutes every hour, six times
        changes += [(at(10 - i), "down"), (at(10 - i) + timedelta(minutes=10), "healthy")]
    tally = uptime.tally(changes, at(24), NOW)
    assert tally.incidents == 6
    assert tally.down == 6 * 600
    assert round(tally.percent, 3) == round(100 * (1 - 3600 / 86400), 3)


def test_repeated_down_rows_are_one_incident():
    changes = [(at(5), "healthy"), (at(4), "down"), (at(3), "down"), (at(2), "healthy")]
    assert uptime.tally(changes, at(24), NOW).incidents == 1


def test_day_cells_colour_by_share_of_bad_time():
    changes = [
        (at(24 * 5), "healthy"),
        (NOW.replace(hour=1) - timedelta(days=2), "down"),
        (NOW.replace(hour=3) - timedelta(days=2), "healthy"),
        (NOW.replace(hour=1) - timedelta(days=1), "degraded"),
        (NOW.replace(hour=2) - timedelta(days=1), "healthy"),
    ]
    cells = uptime.day_cells(changes, NOW, days=90)
    assert len(cells) == 90 and cells[-1].day == NOW.date()
    assert [c.colour for c in cells[-4:]] == ["green", "red", "amber", "green"]
    assert cells[0].colour == "grey"
    assert "down 2 h 0 min" in cells[-3].title


def test_monthly_summary_counts_incidents_and_minutes():
    changes = [
        (datetime(2026, 9, 1, tzinfo=UTC), "healthy"),
        (datetime(2026, 11, 2, 10, tzinfo=UTC), "down"),
        (datetime(2026, 11, 2, 10, 30, tzinfo=UTC), "healthy"),
        (datetime(2026, 11, 9, 10, tzinfo=UTC), "down"),
        (datetime(2026, 11, 9, 10, 12, tzinfo=UTC), "healthy"),
    ]
    months = uptime.monthly(changes, NOW)
    assert [m.label for m in months] == ["November 2026", "October 2026", "September 2026"]
    assert months[0].text == "2 incidents, 42 min"
    assert months[1].text == "All good"
