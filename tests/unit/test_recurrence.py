"""Recurrence: fire times in several zones and across DST transitions, and config validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.domain.errors import ValidationFailed
from services.domain.recurrence import (
    MAX_EVERY_SECONDS,
    PREVIEW_MAX,
    RECURRENCE_TYPES,
    Schedule,
    parse_schedule,
    preview,
)

NEW_YORK = "America/New_York"
BERLIN = "Europe/Berlin"
SYDNEY = "Australia/Sydney"
KOLKATA = "Asia/Kolkata"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def schedule(recurrence_type: str, **config: Any) -> Schedule:
    return parse_schedule(recurrence_type, config, anchor=utc(2026, 1, 1))


def test_recurrence_types_are_the_contract_ones() -> None:
    assert RECURRENCE_TYPES == ("once", "daily", "weekly", "monthly", "custom", "interval")


# --- ordinary days in five zones ------------------------------------------------------------

AFTER = utc(2026, 6, 10, 12, 0)  # a Wednesday; no zone below changes its offset near it


@pytest.mark.parametrize(
    ("recurrence_type", "config", "expected"),
    [
        ("daily", {"time": "14:00"}, utc(2026, 6, 10, 14, 0)),
        ("daily", {"time": "14:00", "timezone": NEW_YORK}, utc(2026, 6, 10, 18, 0)),
        # 14:00 CEST is exactly AFTER, and next_after is strict: the next day.
        ("daily", {"time": "14:00", "timezone": BERLIN}, utc(2026, 6, 11, 12, 0)),
        ("daily", {"time": "14:00", "timezone": SYDNEY}, utc(2026, 6, 11, 4, 0)),
        ("daily", {"time": "14:00", "timezone": KOLKATA}, utc(2026, 6, 11, 8, 30)),
        ("daily", {"time": "12:00:30"}, utc(2026, 6, 10, 12, 0, 30)),
        (
            "weekly",
            {"time": "09:00", "days": [1, 3, 5], "timezone": NEW_YORK},
            utc(2026, 6, 10, 13),
        ),
        ("weekly", {"time": "10:00", "days": [6], "timezone": SYDNEY}, utc(2026, 6, 13, 0, 0)),
        ("weekly", {"time": "13:00", "days": [3], "timezone": BERLIN}, utc(2026, 6, 17, 11, 0)),
        ("weekly", {"time": "18:00", "days": [3], "timezone": KOLKATA}, utc(2026, 6, 10, 12, 30)),
        ("monthly", {"time": "12:00", "day_of_month": 15}, utc(2026, 6, 15, 12, 0)),
        (
            "monthly",
            {"time": "12:00", "day_of_month": 10, "timezone": NEW_YORK},
            utc(2026, 6, 10, 16),
        ),
        (
            "monthly",
            {"time": "12:00", "day_of_month": 10, "timezone": BERLIN},
            utc(2026, 7, 10, 10),
        ),
        ("monthly", {"time": "08:00", "day_of_month": 1, "timezone": SYDNEY}, utc(2026, 6, 30, 22)),
        (
            "monthly",
            {"time": "23:45", "day_of_month": 10, "timezone": KOLKATA},
            utc(2026, 6, 10, 18, 15),
        ),
        ("custom", {"cron": "0 8,12,18 * * 1-5"}, utc(2026, 6, 10, 18, 0)),
        ("custom", {"cron": "0 8,12,18 * * 1-5", "timezone": NEW_YORK}, utc(2026, 6, 10, 16, 0)),
        ("custom", {"cron": "30 9 * * *", "timezone": BERLIN}, utc(2026, 6, 11, 7, 30)),
        ("custom", {"cron": "0 6 * * *", "timezone": SYDNEY}, utc(2026, 6, 10, 20, 0)),
        ("custom", {"cron": "0 9 * * *", "timezone": KOLKATA}, utc(2026, 6, 11, 3, 30)),
        ("once", {"run_at": "2026-12-01T14:00:00+01:00"}, utc(2026, 12, 1, 13, 0)),
        ("once", {"run_at": "2026-06-10T12:00:01Z"}, utc(2026, 6, 10, 12, 0, 1)),
        ("once", {"run_at": "2026-07-01T09:00:00", "timezone": NEW_YORK}, utc(2026, 7, 1, 13)),
        ("once", {"run_at": "2026-07-01T09:00:00", "timezone": SYDNEY}, utc(2026, 6, 30, 23)),
        ("once", {"run_at": "2026-07-01 09:00", "timezone": KOLKATA}, utc(2026, 7, 1, 3, 30)),
    ],
)
def test_next_after_on_ordinary_days(
    recurrence_type: str, config: dict[str, Any], expected: datetime
) -> None:
    got = parse_schedule(recurrence_type, config).next_after(AFTER)
    assert got == expected
    assert got is not None and got.tzinfo is UTC


def test_next_after_accepts_an_instant_in_any_zone() -> None:
    daily = schedule("daily", time="14:00", timezone=BERLIN)
    after = datetime(2026, 6, 10, 8, 0, tzinfo=ZoneInfo(NEW_YORK))  # 12:00 UTC
    assert daily.next_after(after) == utc(2026, 6, 11, 12, 0)


def test_cron_skips_the_weekend() -> None:
    workdays = schedule("custom", cron="0 8,12,18 * * 1-5")
    assert workdays.next_after(utc(2026, 6, 12, 19, 0)) == utc(2026, 6, 15, 8, 0)


# --- daylight saving --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "time", "after", "expected"),
    [
        # spring-forward: 02:30 does not exist, so the run is at the end of the gap (03:00)
        (NEW_YORK, "02:30", utc(2026, 3, 8, 5, 0), [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]),
        (
            BERLIN,
            "02:30",
            utc(2026, 3, 28, 23, 0),
            [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)],
        ),
        (
            SYDNEY,
            "02:30",
            utc(2026, 10, 3, 12, 0),
            [utc(2026, 10, 3, 16), utc(2026, 10, 4, 15, 30)],
        ),
        # the gap's first minute and its last one
        (NEW_YORK, "02:00", utc(2026, 3, 8, 5, 0), [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 0)]),
        (
            NEW_YORK,
            "02:59:59",
            utc(2026, 3, 8, 5),
            [utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 59, 59)],
        ),
        (NEW_YORK, "03:00", utc(2026, 3, 8, 5, 0), [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 7, 0)]),
        # fall-back: the repeated time runs once, at its first (summer time) occurrence
        (
            NEW_YORK,
            "01:30",
            utc(2026, 11, 1, 4, 0),
            [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
        ),
        (
            BERLIN,
            "02:30",
            utc(2026, 10, 24, 22),
            [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        (
            SYDNEY,
            "02:30",
            utc(2026, 4, 4, 12, 0),
            [utc(2026, 4, 4, 15, 30), utc(2026, 4, 5, 16, 30)],
        ),
        # a time just outside the repeated hour is not affected
        (
            NEW_YORK,
            "02:30",
            utc(2026, 11, 1, 4, 0),
            [utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 7, 30)],
        ),
    ],
)
def test_daily_across_dst_transitions(
    zone: str, time: str, after: datetime, expected: list[datetime]
) -> None:
    assert preview(schedule("daily", time=time, timezone=zone), after, 2) == expected


@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        (NEW_YORK, utc(2026, 11, 1, 6, 15), utc(2026, 11, 2, 6, 30)),  # 01:15 EST, second pass
        (NEW_YORK, utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)),  # exactly the first run
        (BERLIN, utc(2026, 10, 25, 1, 0), utc(2026, 10, 26, 1, 30)),  # 02:00 CET, second pass
        (SYDNEY, utc(2026, 4, 4, 16, 10), utc(2026, 4, 5, 16, 30)),  # 02:10 AEST, second pass
    ],
)
def test_repeated_time_does_not_fire_again_in_the_second_pass(
    zone: str, after: datetime, expected: datetime
) -> None:
    time = "01:30" if zone == NEW_YORK else "02:30"
    assert schedule("daily", time=time, timezone=zone).next_after(after) == expected


@pytest.mark.parametrize(
    ("cron", "zone", "after", "expected"),
    [
        # every 15 minutes: 02:00..02:45 and 03:00 all collapse into one run at 03:00 EDT
        (
            "*/15 * * * *",
            NEW_YORK,
            utc(2026, 3, 8, 6, 50),
            [utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 7, 15), utc(2026, 3, 8, 7, 30)],
        ),
        ("30 2 * * *", NEW_YORK, utc(2026, 3, 8, 0), [utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)]),
        ("*/20 2 * * *", BERLIN, utc(2026, 3, 28, 23), [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0)]),
        (
            "0 * * * *",
            SYDNEY,
            utc(2026, 10, 3, 14, 30),
            [utc(2026, 10, 3, 15, 0), utc(2026, 10, 3, 16, 0), utc(2026, 10, 3, 17, 0)],
        ),
        # the repeated hour fires only on its first pass
        (
            "*/30 * * * *",
            NEW_YORK,
            utc(2026, 11, 1, 4, 50),
            [utc(2026, 11, 1, 5, 0), utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 7, 0)],
        ),
        (
            "*/30 * * * *",
            BERLIN,
            utc(2026, 10, 24, 23, 50),
            [utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2, 0)],
        ),
        (
            "0 * * * *",
            SYDNEY,
            utc(2026, 4, 4, 14, 30),
            [utc(2026, 4, 4, 15, 0), utc(2026, 4, 4, 17, 0), utc(2026, 4, 4, 18, 0)],
        ),
        # starting inside the second pass: the next run is after the repeated hour
        ("*/10 * * * *", NEW_YORK, utc(2026, 11, 1, 6, 5), [utc(2026, 11, 1, 7, 0)]),
        ("*/10 * * * *", BERLIN, utc(2026, 10, 25, 1, 5), [utc(2026, 10, 25, 2, 0)]),
    ],
)
def test_cron_across_dst_transitions(
    cron: str, zone: str, after: datetime, expected: list[datetime]
) -> None:
    assert preview(schedule("custom", cron=cron, timezone=zone), after, len(expected)) == expected


def test_every_minute_cron_collapses_the_whole_gap() -> None:
    minutely = schedule("custom", cron="* * * * *", timezone=NEW_YORK)
    times = preview(minutely, utc(2026, 3, 8, 6, 58), 4)  # 01:58 EST
    assert times == [
        utc(2026, 3, 8, 6, 59),
        utc(2026, 3, 8, 7, 0),
        utc(2026, 3, 8, 7, 1),
        utc(2026, 3, 8, 7, 2),
    ]


def test_weekly_and_monthly_on_dst_days() -> None:
    sunday = schedule("weekly", time="02:30", days=[0], timezone=NEW_YORK)
    assert sunday.next_after(utc(2026, 3, 7)) == utc(2026, 3, 8, 7, 0)
    assert sunday.next_after(utc(2026, 10, 31)) == utc(2026, 11, 1, 7, 30)
    eighth = schedule("monthly", time="02:30", day_of_month=8, timezone=NEW_YORK)
    assert eighth.next_after(utc(2026, 3, 1)) == utc(2026, 3, 8, 7, 0)
    fifth = schedule("monthly", time="02:30", day_of_month=5, timezone=SYDNEY)
    assert fifth.next_after(utc(2026, 4, 1)) == utc(2026, 4, 4, 15, 30)
    assert fifth.next_after(utc(2026, 4, 4, 15, 30)) == utc(2026, 5, 4, 16, 30)


@pytest.mark.parametrize(
    ("run_at", "zone", "expected"),
    [
        ("2026-03-08T02:30:00", NEW_YORK, utc(2026, 3, 8, 7, 0)),  # in the gap
        ("2026-11-01T01:30:00", NEW_YORK, utc(2026, 11, 1, 5, 30)),  # repeated: first
        ("2026-03-29T02:15:00", BERLIN, utc(2026, 3, 29, 1, 0)),
        ("2026-10-25T02:15:00", BERLIN, utc(2026, 10, 25, 0, 15)),
        ("2026-10-04T02:45:00", SYDNEY, utc(2026, 10, 3, 16, 0)),
        ("2026-04-05T02:45:00", SYDNEY, utc(2026, 4, 4, 15, 45)),
        # an explicit offset wins over the zone, even for the second pass
        ("2026-11-01T01:30:00-05:00", NEW_YORK, utc(2026, 11, 1, 6, 30)),
    ],
)
def test_once_wall_clock_run_at_follows_the_dst_rules(
    run_at: str, zone: str, expected: datetime
) -> None:
    once = schedule("once", run_at=run_at, timezone=zone)
    assert once.next_after(utc(2026, 1, 1)) == expected
    assert once.next_after(expected) is None


# --- weekly and monthly specifics -------------------------------------------------------------


@pytest.mark.parametrize("sunday", [0, 7])
def test_weekly_day_0_and_7_are_sunday(sunday: int) -> None:
    weekly = schedule("weekly", time="09:00", days=[sunday])
    assert preview(weekly, AFTER, 2) == [utc(2026, 6, 14, 9, 0), utc(2026, 6, 21, 9, 0)]
    assert weekly.canonical_config()["days"] == [0]


def test_weekly_several_days_in_order() -> None:
    weekly = schedule("weekly", time="09:00", days=[5, 1, 7])
    assert preview(weekly, AFTER, 4) == [
        utc(2026, 6, 12, 9),
        utc(2026, 6, 14, 9),
        utc(2026, 6, 15, 9),
        utc(2026, 6, 19, 9),
    ]


@pytest.mark.parametrize(
    ("day", "after", "expected"),
    [
        (
            31,
            utc(2027, 1, 31, 12),
            [utc(2027, 2, 28, 12), utc(2027, 3, 31, 12), utc(2027, 4, 30, 12)],
        ),
        (
            31,
            utc(2028, 1, 31, 12),
            [utc(2028, 2, 29, 12), utc(2028, 3, 31, 12), utc(2028, 4, 30, 12)],
        ),
        (
            30,
            utc(2027, 1, 30, 12),
            [utc(2027, 2, 28, 12), utc(2027, 3, 30, 12), utc(2027, 4, 30, 12)],
        ),
        (
            30,
            utc(2028, 1, 30, 12),
            [utc(2028, 2, 29, 12), utc(2028, 3, 30, 12), utc(2028, 4, 30, 12)],
        ),
        (
            29,
            utc(2027, 1, 29, 12),
            [utc(2027, 2, 28, 12), utc(2027, 3, 29, 12), utc(2027, 4, 29, 12)],
        ),
        (
            29,
            utc(2028, 1, 29, 12),
            [utc(2028, 2, 29, 12), utc(2028, 3, 29, 12), utc(2028, 4, 29, 12)],
        ),
        (
            31,
            utc(2026, 11, 30, 12),
            [utc(2026, 12, 31, 12), utc(2027, 1, 31, 12), utc(2027, 2, 28, 12)],
        ),
    ],
)
def test_monthly_clamps_to_the_last_day(
    day: int, after: datetime, expected: list[datetime]
) -> None:
    assert preview(schedule("monthly", time="12:00", day_of_month=day), after, 3) == expected


def test_monthly_clamping_in_a_zone() -> None:
    monthly = schedule("monthly", time="12:00", day_of_month=31, timezone=BERLIN)
    assert preview(monthly, utc(2026, 2, 1), 3) == [
        utc(2026, 2, 28, 11),
        utc(2026, 3, 31, 10),
        utc(2026, 4, 30, 10),
    ]


# --- once, interval ------------------------------------------------------------------------------


def test_once_before_at_and_after_run_at() -> None:
    once = schedule("once", run_at="2026-12-01T14:00:00+01:00")
    assert once.next_after(utc(2026, 12, 1, 12, 59, 59)) == utc(2026, 12, 1, 13, 0)
    assert once.next_after(utc(2026, 12, 1, 13, 0)) is None
    assert once.next_after(utc(2027, 1, 1)) is None
    assert preview(once, utc(2026, 1, 1), 5) == [utc(2026, 12, 1, 13, 0)]


def test_interval_from_start_at() -> None:
    every_hour = schedule("interval", every_seconds=3600, start_at="2026-06-01T00:00:00+02:00")
    assert every_hour.next_after(utc(2026, 5, 1)) == utc(2026, 5, 31, 22, 0)
    assert every_hour.next_after(utc(2026, 5, 31, 22, 0)) == utc(2026, 5, 31, 23, 0)
    assert every_hour.next_after(utc(2026, 6, 1, 5, 30)) == utc(2026, 6, 1, 6, 0)
    assert every_hour.next_after(utc(2026, 6, 1, 5, 59, 59, 999999)) == utc(2026, 6, 1, 6, 0)


def test_interval_from_anchor_starts_one_period_after_it() -> None:
    every_5m = parse_schedule("interval", {"every_seconds": 300}, anchor=utc(2026, 6, 1, 12))
    assert every_5m.next_after(utc(2026, 6, 1, 11)) == utc(2026, 6, 1, 12, 5)
    assert every_5m.next_after(utc(2026, 6, 1, 12)) == utc(2026, 6, 1, 12, 5)
    assert every_5m.next_after(utc(2026, 6, 1, 12, 5)) == utc(2026, 6, 1, 12, 10)
    assert every_5m.next_after(utc(2026, 6, 2, 12, 7)) == utc(2026, 6, 2, 12, 10)


def test_interval_ignores_dst() -> None:
    hourly = schedule(
        "interval", every_seconds=3600, start_at="2026-03-08T00:00:00-05:00", timezone=NEW_YORK
    )
    assert preview(hourly, utc(2026, 3, 8, 5, 30), 3) == [
        utc(2026, 3, 8, 6),
        utc(2026, 3, 8, 7),
        utc(2026, 3, 8, 8),
    ]


def test_interval_naive_start_at_is_wall_time_in_the_zone() -> None:
    interval = schedule(
        "interval", every_seconds=60, start_at="2026-07-01T09:00:00", timezone=BERLIN
    )
    assert interval.next_after(utc(2026, 1, 1)) == utc(2026, 7, 1, 7, 0)


def test_interval_needs_start_at_or_anchor() -> None:
    with pytest.raises(ValueError, match="anchor"):
        parse_schedule("interval", {"every_seconds": 60})


# --- preview and termination -------------------------------------------------------------------


def test_preview_returns_count_times_in_order() -> None:
    times = preview(schedule("custom", cron="*/5 * * * *"), AFTER, PREVIEW_MAX)
    assert len(times) == PREVIEW_MAX
    assert times[0] == utc(2026, 6, 10, 12, 5)
    assert times[-1] == utc(2026, 6, 10, 12, 0) + timedelta(minutes=5 * PREVIEW_MAX)
    assert preview(schedule("daily", time="14:00"), AFTER, 1) == [utc(2026, 6, 10, 14, 0)]


@pytest.mark.parametrize("count", [0, -1, PREVIEW_MAX + 1, True, "3", 2.0])
def test_preview_rejects_a_bad_count(count: Any) -> None:
    with pytest.raises(ValidationFailed) as failure:
        preview(schedule("daily", time="14:00"), AFTER, count)
    assert failure.value.field == "count"


def test_naive_after_is_a_programming_error() -> None:
    for recurring in (schedule("daily", time="14:00"), schedule("interval", every_seconds=5)):
        with pytest.raises(ValueError, match="timezone-aware"):
            recurring.next_after(datetime(2026, 6, 10, 12))


def test_rare_cron_is_found_quickly() -> None:
    leap_day = schedule("custom", cron="0 0 29 2 *")
    assert leap_day.next_after(utc(2096, 3, 1)) == utc(2104, 2, 29)  # 2100 is not a leap year


@pytest.mark.parametrize(
    ("recurrence_type", "config"),
    [
        ("daily", {"time": "22:00"}),
        ("weekly", {"time": "22:00", "days": [5]}),
        ("monthly", {"time": "22:00", "day_of_month": 31}),
        ("custom", {"cron": "0 22 * * *"}),
        ("interval", {"every_seconds": MAX_EVERY_SECONDS, "start_at": "2026-01-01T00:00:00Z"}),
    ],
)
def test_no_time_after_year_9999_means_none(recurrence_type: str, config: dict[str, Any]) -> None:
    assert parse_schedule(recurrence_type, config).next_after(utc(9999, 12, 31, 23)) is None


# --- canonical config ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recurrence_type", "config", "canonical"),
    [
        (
            "once",
            {"run_at": "2026-12-01T14:00:00Z"},
            {"run_at": "2026-12-01T14:00:00+00:00", "timezone": "UTC"},
        ),
        (
            "once",
            {"run_at": "2026-12-01T14:00", "timezone": BERLIN},
            {"run_at": "2026-12-01T14:00:00", "timezone": BERLIN},
        ),
        ("daily", {"time": "9:05:00"}, {"time": "09:05", "timezone": "UTC"}),
        ("daily", {"time": "09:05:07", "timezone": None}, {"time": "09:05:07", "timezone": "UTC"}),
        (
            "weekly",
            {"time": "09:00", "days": [5, 1, 3, 1, 7, 0], "timezone": SYDNEY},
            {"time": "09:00", "days": [0, 1, 3, 5], "timezone": SYDNEY},
        ),
        (
            "monthly",
            {"day_of_month": 31, "time": "12:00"},
            {"time": "12:00", "day_of_month": 31, "timezone": "UTC"},
        ),
        ("custom", {"cron": "  0  8,12 *\t* 1-5 "}, {"cron": "0 8,12 * * 1-5", "timezone": "UTC"}),
        ("interval", {"every_seconds": 300}, {"every_seconds": 300, "timezone": "UTC"}),
        (
            "interval",
            {"every_seconds": 300, "start_at": "2026-06-01T00:00:00+02:00"},
            {"every_seconds": 300, "start_at": "2026-06-01T00:00:00+02:00", "timezone": "UTC"},
        ),
    ],
)
def test_canonical_config(
    recurrence_type: str, config: dict[str, Any], canonical: dict[str, Any]
) -> None:
    parsed = schedule(recurrence_type, **config)
    assert parsed.recurrence_type == recurrence_type
    assert parsed.canonical_config() == canonical
    reparsed = schedule(recurrence_type, **canonical)
    assert reparsed.canonical_config() == canonical


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recurrence_type", "config", "field"),
    [
        ("daily", {"time": "25:00"}, "recurrence_config.time"),
        ("daily", {"time": "14:60"}, "recurrence_config.time"),
        ("daily", {"time": "14:00:60"}, "recurrence_config.time"),
        ("daily", {"time": "14"}, "recurrence_config.time"),
        ("daily", {"time": "2pm"}, "recurrence_config.time"),
        ("daily", {"time": " 14:00"}, "recurrence_config.time"),
        ("daily", {"time": "14:00:00.5"}, "recurrence_config.time"),
        ("daily", {"time": 1400}, "recurrence_config.time"),
        ("daily", {"time": None}, "recurrence_config.time"),
        ("daily", {}, "recurrence_config.time"),
        ("weekly", {"time": "09:00"}, "recurrence_config.days"),
        ("weekly", {"time": "09:00", "days": []}, "recurrence_config.days"),
        ("weekly", {"time": "09:00", "days": [8]}, "recurrence_config.days"),
        ("weekly", {"time": "09:00", "days": [-1]}, "recurrence_config.days"),
        ("weekly", {"time": "09:00", "days": [1, True]}, "recurrence_config.days"),
        ("weekly", {"time": "09:00", "days": [1.0]}, "recurrence_config.days"),
        ("weekly", {"time": "09:00", "days": ["1"]}, "recurrence_config.days"),
        ("weekly", {"time": "09:00", "days": "1,3"}, "recurrence_config.days"),
        ("weekly", {"time": "09:00", "days": 1}, "recurrence_config.days"),
        ("weekly", {"time": "9h", "days": [1]}, "recurrence_config.time"),
        ("monthly", {"time": "12:00"}, "recurrence_config.day_of_month"),
        ("monthly", {"time": "12:00", "day_of_month": 0}, "recurrence_config.day_of_month"),
        ("monthly", {"time": "12:00", "day_of_month": 32}, "recurrence_config.day_of_month"),
        ("monthly", {"time": "12:00", "day_of_month": "15"}, "recurrence_config.day_of_month"),
        ("monthly", {"time": "12:00", "day_of_month": 15.0}, "recurrence_config.day_of_month"),
        ("monthly", {"time": "12:00", "day_of_month": True}, "recurrence_config.day_of_month"),
        ("custom", {}, "recurrence_config.cron"),
        ("custom", {"cron": "0 8 * * * *"}, "recurrence_config.cron"),
        ("custom", {"cron": "0 0 8 * * * 2026"}, "recurrence_config.cron"),
        ("custom", {"cron": "0 8 * *"}, "recurrence_config.cron"),
        ("custom", {"cron": "@daily"}, "recurrence_config.cron"),
        ("custom", {"cron": ""}, "recurrence_config.cron"),
        ("custom", {"cron": "61 * * * *"}, "recurrence_config.cron"),
        ("custom", {"cron": "0 24 * * *"}, "recurrence_config.cron"),
        ("custom", {"cron": "0 0 * * 8"}, "recurrence_config.cron"),
        ("custom", {"cron": "a b c d e"}, "recurrence_config.cron"),
        ("custom", {"cron": "*/0 * * * *"}, "recurrence_config.cron"),
        ("custom", {"cron": "H * * * *"}, "recurrence_config.cron"),
        ("custom", {"cron": "0 0 30 2 *"}, "recurrence_config.cron"),
        ("custom", {"cron": "0 0 31 4,6,9,11 *"}, "recurrence_config.cron"),
        ("custom", {"cron": 5}, "recurrence_config.cron"),
        ("custom", {"cron": ["0", "8", "*", "*", "*"]}, "recurrence_config.cron"),
        (
            "interval",
            {"every_seconds": 0, "start_at": "2026-06-01T00:00:00Z"},
            "recurrence_config.every_seconds",
        ),
        ("interval", {"every_seconds": -5}, "recurrence_config.every_seconds"),
        ("interval", {"every_seconds": "300"}, "recurrence_config.every_seconds"),
        ("interval", {"every_seconds": 300.5}, "recurrence_config.every_seconds"),
        ("interval", {"every_seconds": True}, "recurrence_config.every_seconds"),
        ("interval", {"every_seconds": MAX_EVERY_SECONDS + 1}, "recurrence_config.every_seconds"),
        ("interval", {"every_seconds": None}, "recurrence_config.every_seconds"),
        ("interval", {}, "recurrence_config.every_seconds"),
        ("interval", {"every_seconds": 60, "start_at": "yesterday"}, "recurrence_config.start_at"),
        (
            "interval",
            {"every_seconds": 60, "start_at": 1_700_000_000},
            "recurrence_config.start_at",
        ),
        ("once", {}, "recurrence_config.run_at"),
        ("once", {"run_at": "2026-13-01T00:00:00Z"}, "recurrence_config.run_at"),
        ("once", {"run_at": "2026-12-01"}, "recurrence_config.run_at"),
        ("once", {"run_at": "tomorrow at noon"}, "recurrence_config.run_at"),
        ("once", {"run_at": 1_700_000_000}, "recurrence_config.run_at"),
        ("daily", {"time": "14:00", "timezone": "Mars/Olympus_Mons"}, "recurrence_config.timezone"),
        ("daily", {"time": "14:00", "timezone": "america/new_york"}, "recurrence_config.timezone"),
        ("daily", {"time": "14:00", "timezone": "America"}, "recurrence_config.timezone"),
        ("daily", {"time": "14:00", "timezone": "../../etc/passwd"}, "recurrence_config.timezone"),
        ("daily", {"time": "14:00", "timezone": "/etc/localtime"}, "recurrence_config.timezone"),
        ("daily", {"time": "14:00", "timezone": ""}, "recurrence_config.timezone"),
        ("daily", {"time": "14:00", "timezone": "x" * 300}, "recurrence_config.timezone"),
        ("daily", {"time": "14:00", "timezone": 1}, "recurrence_config.timezone"),
        ("custom", {"cron": "0 8 * * *", "timezone": "+01:00"}, "recurrence_config.timezone"),
        ("daily", {"time": "14:00", "days": [1]}, "recurrence_config.days"),
        ("once", {"run_at": "2026-12-01T14:00:00Z", "time": "14:00"}, "recurrence_config.time"),
        ("interval", {"every_seconds": 60, "cron": "* * * * *"}, "recurrence_config.cron"),
        ("weekly", {"time": "09:00", "days": [1], "tz": "UTC"}, "recurrence_config.tz"),
    ],
)
def test_validation_names_the_field(
    recurrence_type: str, config: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationFailed) as failure:
        parse_schedule(recurrence_type, config, anchor=utc(2026, 1, 1))
    assert failure.value.field == field
    assert failure.value.reason
    assert failure.value.message == f"{field}: {failure.value.reason}"


@pytest.mark.parametrize("recurrence_type", ["hourly", "", "Daily", None, 1, ["daily"]])
def test_unknown_recurrence_type(recurrence_type: Any) -> None:
    with pytest.raises(ValidationFailed) as failure:
        parse_schedule(recurrence_type, {"time": "14:00"})
    assert failure.value.field == "recurrence_type"
    assert "once, daily, weekly, monthly, custom, interval" in failure.value.reason


@pytest.mark.parametrize("config", [[], "14:00", None, 5, [("time", "14:00")]])
def test_config_must_be_an_object(config: Any) -> None:
    with pytest.raises(ValidationFailed) as failure:
        parse_schedule("daily", config)
    assert failure.value.field == "recurrence_config"
    assert "JSON object" in failure.value.reason


@pytest.mark.parametrize(
    ("recurrence_type", "config", "field", "reason"),
    [
        ("daily", {"time": "25:00"}, "time", "must be HH:MM or HH:MM:SS (24-hour), got '25:00'"),
        (
            "daily",
            {"time": "14:00", "every_seconds": 5},
            "every_seconds",
            "unknown field for daily recurrence; expected one of time, timezone",
        ),
        ("weekly", {"time": "09:00"}, "days", "is required for weekly recurrence"),
        ("custom", {"cron": "0 0 30 2 *"}, "cron", "'0 0 30 2 *' never fires: no date matches it"),
    ],
)
def test_validation_reasons_read_well(
    recurrence_type: str, config: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ValidationFailed) as failure:
        parse_schedule(recurrence_type, config)
    assert failure.value.field == f"recurrence_config.{field}"
    assert failure.value.reason == reason


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("0 8 * * * *", "five-field"),
        ("@daily", "five-field"),
        ("61 * * * *", "minute 61 is out of range 0-59"),
        ("* * * * 1#9", "is not a valid cron expression"),
    ],
)
def test_cron_reasons_say_what_is_wrong(cron: str, words: str) -> None:
    with pytest.raises(ValidationFailed) as failure:
        parse_schedule("custom", {"cron": cron})
    assert words in failure.value.reason


def test_long_bad_values_are_cut_in_the_reason() -> None:
    with pytest.raises(ValidationFailed) as failure:
        parse_schedule("daily", {"time": "9" * 10_000})
    assert len(failure.value.reason) < 200
