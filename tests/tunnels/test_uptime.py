from datetime import UTC, datetime, timedelta

from tunnels import uptime

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
# Watched without a break for longer than any window.
ALWAYS = [(NOW - timedelta(days=400), NOW)]


def at(hours_ago: float) -> datetime:
    return NOW - timedelta(hours=hours_ago)


def percents(changes, observed=ALWAYS):
    return {label: t.percent for label, t in uptime.uptime_windows(changes, NOW, observed=observed).items()}


def test_always_healthy_is_100_percent():
    changes = [(at(24 * 100), "healthy")]
    assert percents(changes) == {"24h": 100.0, "7d": 100.0, "30d": 100.0, "90d": 100.0}


def test_six_hours_down_in_the_last_day_is_75_percent():
    changes = [(at(48), "healthy"), (at(12), "down"), (at(6), "healthy")]
    assert percents(changes)["24h"] == 75.0


def test_degraded_counts_as_up_but_is_reported():
    changes = [(at(48), "healthy"), (at(10), "degraded"), (at(8), "healthy")]
    tally = uptime.tally(changes, at(24), NOW, observed=ALWAYS)
    assert tally.percent == 100.0
    assert tally.degraded == 2 * 3600


def test_time_before_the_first_change_and_inactive_time_count_neither_way():
    changes = [(at(12), "inactive"), (at(6), "healthy"), (at(3), "down")]
    # Known time is the last 6 hours only: 3 up, 3 down.
    assert percents(changes)["24h"] == 50.0


def test_no_data_is_none_not_zero():
    assert percents([])["24h"] is None


def test_unobserved_time_is_neither_up_nor_down():
    # Cloudflare says healthy since 100 days ago; Gatehouse watched only the last 2 days, and saw 1 hour down.
    changes = [(at(24 * 100), "healthy"), (at(5), "down"), (at(4), "healthy")]
    observed = [(at(48), NOW)]
    windows = uptime.uptime_windows(changes, NOW, observed=observed)
    assert round(windows["90d"].percent, 4) == round(100 * 47 / 48, 4)
    assert windows["90d"].known == 48 * 3600
    assert windows["90d"].unobserved == (90 * 24 - 48) * 3600
    assert windows["90d"].text == "97.92 % of 2 d 0 h observed; 88 d 0 h not observed"
    assert windows["24h"].text == "95.83 % of 1 d 0 h observed"


def test_a_gap_between_passes_is_unknown_even_when_the_tunnel_was_down_around_it():
    changes = [(at(30), "healthy"), (at(10), "down")]
    # Passes stopped from 9 h ago to 3 h ago.
    observed = [(at(30), at(9)), (at(3), NOW)]
    tally = uptime.tally(changes, at(24), NOW, observed=observed)
    assert tally.down == 4 * 3600  # 10 h ago to 9 h ago, and the last 3 h
    assert tally.up == 14 * 3600  # 24 h ago to 10 h ago
    assert tally.unobserved == 6 * 3600
    assert tally.incidents == 1


def test_nothing_observed_is_not_observed_never_all_good():
    changes = [(datetime(2026, 8, 1, tzinfo=UTC), "healthy")]
    observed = [(datetime(2026, 11, 20, tzinfo=UTC), NOW)]
    months = uptime.monthly(changes, NOW, observed=observed)
    assert [m.text for m in months] == [
        "No downtime in 3 d 12 h observed; 19 d 0 h not observed",
        "Not observed",
        "Not observed",
    ]
    cells = uptime.day_cells(changes, NOW, observed=observed)
    assert cells[-5].colour == "grey" and cells[-5].title.endswith("not observed")
    assert cells[-1].colour == "green"
    assert percents(changes, observed)["90d"] == 100.0


def test_a_fully_observed_month_without_downtime_is_all_good():
    changes = [(datetime(2026, 8, 1, tzinfo=UTC), "healthy")]
    months = uptime.monthly(changes, NOW, observed=ALWAYS)
    assert [m.text for m in months] == ["All good", "All good", "All good"]


def test_an_incident_still_going_on_counts_until_now_in_every_window_it_reaches():
    changes = [(datetime(2026, 10, 1, tzinfo=UTC), "healthy"), (datetime(2026, 10, 31, 23, tzinfo=UTC), "down")]
    months = uptime.monthly(changes, NOW, observed=ALWAYS)
    november = months[0].tally
    assert november.incidents == 1 and november.down == (NOW - datetime(2026, 11, 1, tzinfo=UTC)).total_seconds()
    assert months[1].text == "1 incident, 1 h 0 min down"
    assert uptime.tally(changes, at(1), NOW, observed=ALWAYS).down == 3600


def test_the_tunnels_own_observed_time_starts_at_first_sight_and_ends_at_deletion():
    spans = [(at(100), at(50)), (at(40), NOW)]
    assert uptime.tunnel_observed(spans, first_seen=at(60), deleted=at(10), now=NOW) == [
        (at(60), at(50)),
        (at(40), at(10)),
    ]


def test_a_flapping_tunnel_counts_each_outage_once():
    changes = [(at(30), "healthy")]
    for i in range(6):  # down for 10 minutes every hour, six times
        changes += [(at(10 - i), "down"), (at(10 - i) + timedelta(minutes=10), "healthy")]
    tally = uptime.tally(changes, at(24), NOW, observed=ALWAYS)
    assert tally.incidents == 6
    assert tally.down == 6 * 600
    assert round(tally.percent, 3) == round(100 * (1 - 3600 / 86400), 3)


def test_repeated_down_rows_are_one_incident():
    changes = [(at(5), "healthy"), (at(4), "down"), (at(3), "down"), (at(2), "healthy")]
    assert uptime.tally(changes, at(24), NOW, observed=ALWAYS).incidents == 1


def test_day_cells_colour_by_share_of_bad_time():
    changes = [
        (at(24 * 5), "healthy"),
        (NOW.replace(hour=1) - timedelta(days=2), "down"),
        (NOW.replace(hour=3) - timedelta(days=2), "healthy"),
        (NOW.replace(hour=1) - timedelta(days=1), "degraded"),
        (NOW.replace(hour=2) - timedelta(days=1), "healthy"),
    ]
    cells = uptime.day_cells(changes, NOW, observed=ALWAYS, days=90)
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
    months = uptime.monthly(changes, NOW, observed=ALWAYS)
    assert [m.label for m in months] == ["November 2026", "October 2026", "September 2026"]
    assert months[0].text == "2 incidents, 42 min down"
    assert months[1].text == "All good"
