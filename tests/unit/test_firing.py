"""Firing: what the ticker records for a due task (TaskDue, RunMissed, RunSkipped or nothing yet).

Every test builds a DueTask as the tasks read table would hold it, decides at a given `now` and
compares the whole event with one whose instants were worked out by hand.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from events.base import Event
from events.task import RunMissed, RunSkipped, TaskDue
from services.domain.firing import (
    MISSED_ONE_BY_ONE,
    DueTask,
    decide_fire,
    event_id,
    execution_id,
    fire_at,
    name_id,
)

TASK_ID = "6f1c2a7e-0d1b-4c3a-9e8f-5a4b3c2d1e0f"
NEW_YORK = "America/New_York"
BERLIN = "Europe/Berlin"

OLDER_MISSED = "a later occurrence was due before this one could run (scheduler not running)"
STILL_RUNNING = "the previous run is still running (overlap_policy skip)"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def beyond_grace(lateness_seconds: int, grace_seconds: int = 3600) -> str:
    return f"due {lateness_seconds} s ago, beyond misfire_grace_seconds ({grace_seconds} s)"


def due_task(
    recurrence_type: str,
    config: dict[str, Any],
    next_run_time: datetime,
    *,
    task_id: str = TASK_ID,
    version: int = 3,
    **options: Any,
) -> DueTask:
    return DueTask(
        task_id=task_id,
        version=version,
        task_type="command",
        recurrence_type=recurrence_type,
        recurrence_config=config,
        next_run_time=next_run_time,
        **options,
    )


def fired(
    task: DueTask,
    *,
    now: datetime,
    next_run_time: datetime | None,
    lateness_seconds: float = 0.0,
) -> TaskDue:
    """The TaskDue that `task` (at its version) should produce when it fires at `now`."""
    return TaskDue(
        task_id=task.task_id,
        execution_id=execution_id(event_id(task)),
        scheduled_for=task.next_run_time,
        trigger="schedule",
        due_at=now,
        next_run_time=next_run_time,
        lateness_seconds=lateness_seconds,
    )


def at(task: DueTask, next_run_time: datetime) -> DueTask:
    """The task as the read table shows it once the previous decision has been projected."""
    return msgspec.structs.replace(task, next_run_time=next_run_time, version=task.version + 1)


# --- on time, every recurrence type -----------------------------------------------------------

ON_TIME_CASES: list[tuple[str, str, dict[str, Any], datetime, datetime | None]] = [
    ("daily utc", "daily", {"time": "09:00"}, utc(2026, 6, 10, 9), utc(2026, 6, 11, 9)),
    # 14:00 CEST is 12:00 UTC.
    (
        "daily berlin",
        "daily",
        {"time": "14:00", "timezone": BERLIN},
        utc(2026, 6, 10, 12),
        utc(2026, 6, 11, 12),
    ),
    # 2026-06-10 is a Wednesday: Monday, Wednesday, Friday -> Friday.
    (
        "weekly midweek",
        "weekly",
        {"time": "09:00", "days": [1, 3, 5]},
        utc(2026, 6, 10, 9),
        utc(2026, 6, 12, 9),
    ),
    # From Friday over the weekend to Monday.
    (
        "weekly over the weekend",
        "weekly",
        {"time": "09:00", "days": [1, 3, 5]},
        utc(2026, 6, 12, 9),
        utc(2026, 6, 15, 9),
    ),
    # Sunday spelled 0: Sunday 2026-06-14 -> Sunday 2026-06-21.
    (
        "weekly sundays",
        "weekly",
        {"time": "07:15", "days": [0]},
        utc(2026, 6, 14, 7, 15),
        utc(2026, 6, 21, 7, 15),
    ),
    (
        "monthly",
        "monthly",
        {"time": "12:00", "day_of_month": 15},
        utc(2026, 6, 15, 12),
        utc(2026, 7, 15, 12),
    ),
    # Day 31 runs on the last day of a shorter month (2026 is not a leap year).
    (
        "monthly past month end",
        "monthly",
        {"time": "12:00", "day_of_month": 31},
        utc(2026, 1, 31, 12),
        utc(2026, 2, 28, 12),
    ),
    (
        "monthly back to day 31",
        "monthly",
        {"time": "12:00", "day_of_month": 31},
        utc(2026, 2, 28, 12),
        utc(2026, 3, 31, 12),
    ),
    # 08:00, 12:00, 18:00 Monday to Friday: Wednesday 18:00 -> Thursday 08:00.
    (
        "custom evening",
        "custom",
        {"cron": "0 8,12,18 * * 1-5"},
        utc(2026, 6, 10, 18),
        utc(2026, 6, 11, 8),
    ),
    (
        "custom midday",
        "custom",
        {"cron": "0 8,12,18 * * 1-5"},
        utc(2026, 6, 11, 8),
        utc(2026, 6, 11, 12),
    ),
    # Friday 18:00 -> Monday 08:00.
    (
        "custom over the weekend",
        "custom",
        {"cron": "0 8,12,18 * * 1-5"},
        utc(2026, 6, 12, 18),
        utc(2026, 6, 15, 8),
    ),
    (
        "interval",
        "interval",
        {"every_seconds": 300},
        utc(2026, 6, 10, 9, 2, 7),
        utc(2026, 6, 10, 9, 7, 7),
    ),
    # 2026-12-01T14:00+01:00 is 13:00 UTC; nothing follows a one-time task.
    ("once", "once", {"run_at": "2026-12-01T14:00:00+01:00"}, utc(2026, 12, 1, 13), None),
]


@pytest.mark.parametrize(
    ("recurrence_type", "config", "scheduled", "following"),
    [case[1:] for case in ON_TIME_CASES],
    ids=[case[0] for case in ON_TIME_CASES],
)
def test_fires_on_time(
    recurrence_type: str, config: dict[str, Any], scheduled: datetime, following: datetime | None
) -> None:
    # Given a task whose occurrence is now
    task = due_task(recurrence_type, config, scheduled)
    # When the ticker decides at that very instant
    event = decide_fire(task, scheduled)
    # Then the occurrence fires, and the task moves on to the following one
    assert event == fired(task, now=scheduled, next_run_time=following)


@pytest.mark.parametrize(
    ("recurrence_type", "config", "scheduled", "following"),
    [case[1:] for case in ON_TIME_CASES],
    ids=[case[0] for case in ON_TIME_CASES],
)
def test_a_tick_late_fires_with_its_lateness(
    recurrence_type: str, config: dict[str, Any], scheduled: datetime, following: datetime | None
) -> None:
    # Given a task whose occurrence came 2.25 s ago
    task = due_task(recurrence_type, config, scheduled)
    now = scheduled + timedelta(seconds=2, milliseconds=250)
    # When the ticker decides
    event = decide_fire(task, now)
    # Then it fires, saying how late
    assert event == fired(task, now=now, next_run_time=following, lateness_seconds=2.25)


def test_nothing_happens_before_the_occurrence() -> None:
    # Given a task without jitter whose occurrence is still a second away
    task = due_task("daily", {"time": "09:00"}, utc(2026, 6, 10, 9))
    # When the ticker decides too early, Then nothing happens yet
    assert decide_fire(task, utc(2026, 6, 10, 8, 59, 59)) is None


# --- deterministic ids ---------------------------------------------------------------------


def test_the_same_task_and_version_always_give_the_same_ids() -> None:
    # Given the same task at the same version, read twice (say by two racing tickers)
    first = due_task("daily", {"time": "09:00"}, utc(2026, 6, 10, 9), version=7)
    second = due_task("daily", {"time": "09:00"}, utc(2026, 6, 10, 9), version=7)
    # When both decide, even at slightly different instants
    one = decide_fire(first, utc(2026, 6, 10, 9, 0, 1))
    other = decide_fire(second, utc(2026, 6, 10, 9, 0, 2))
    # Then they name the same event and the same execution
    assert event_id(first) == event_id(second)
    assert isinstance(one, TaskDue)
    assert isinstance(other, TaskDue)
    assert one.execution_id == other.execution_id == execution_id(event_id(first))


def test_another_version_or_task_gives_other_ids() -> None:
    # Given one task at two versions, and another task at the first version
    task = due_task("daily", {"time": "09:00"}, utc(2026, 6, 10, 9), version=7)
    later = msgspec.structs.replace(task, version=8)
    stranger = msgspec.structs.replace(task, task_id="0e6b0c4d-93e1-4f55-a1f8-7d2c9b3a6e41")
    # When their ids are derived
    ids = [event_id(task), event_id(later), event_id(stranger)]
    executions = [execution_id(each) for each in ids]
    # Then all six are distinct UUIDs
    assert len(set(ids + executions)) == 6
    for each in ids + executions:
        assert str(uuid.UUID(each)) == each


def test_ids_are_stable_functions_of_their_input() -> None:
    # Given a task, When its ids are derived twice, Then they are the same strings
    task = due_task("daily", {"time": "09:00"}, utc(2026, 6, 10, 9))
    assert event_id(task) == event_id(task)
    assert execution_id(event_id(task)) == execution_id(event_id(task))
    assert execution_id(event_id(task)) != event_id(task)


def test_ids_are_the_uuid5_of_their_names_as_ever() -> None:
    # The ids of events already in the log, and of tickers still running an older version,
    # came from uuid.uuid5: the faster derivation must give exactly the same strings.
    namespace = uuid.UUID("0b5d0c38-9d5f-4a8e-8f7e-3c1f2a4b6d90")
    names = [f"{uuid.uuid4()}/{version}" for version in range(1, 500)]
    names += [f"execution/{uuid.uuid4()}", "", "é/∞", "x" * 1000]
    assert [name_id(name) for name in names] == [str(uuid.uuid5(namespace, n)) for n in names]
    task = due_task("daily", {"time": "09:00"}, utc(2026, 6, 10, 9))
    assert event_id(task) == str(uuid.uuid5(namespace, f"{task.task_id}/{task.version}"))


# --- misfire: the scheduler was down -------------------------------------------------------

DAILY = {"time": "09:00"}


def test_downtime_across_three_occurrences_misses_the_older_ones_and_fires_the_latest() -> None:
    # Given a daily 09:00 task last armed for 06-10, and a ticker back only at 06-12 09:30
    now = utc(2026, 6, 12, 9, 30)
    task = due_task("daily", DAILY, utc(2026, 6, 10, 9))
    # When it decides on the oldest occurrence
    # Then that one is missed, and the task moves to the second
    assert decide_fire(task, now) == RunMissed(
        task_id=TASK_ID,
        scheduled_for=utc(2026, 6, 10, 9),
        reason=OLDER_MISSED,
        recorded_at=now,
        next_run_time=utc(2026, 6, 11, 9),
    )
    # When it decides on the second
    second = at(task, utc(2026, 6, 11, 9))
    # Then that one is missed too, and the task moves to the latest
    assert decide_fire(second, now) == RunMissed(
        task_id=TASK_ID,
        scheduled_for=utc(2026, 6, 11, 9),
        reason=OLDER_MISSED,
        recorded_at=now,
        next_run_time=utc(2026, 6, 12, 9),
    )
    # When it decides on the latest, 30 minutes late and so within the hour of grace
    latest = at(second, utc(2026, 6, 12, 9))
    # Then the latest fires, 1800 s late
    assert decide_fire(latest, now) == fired(
        latest, now=now, next_run_time=utc(2026, 6, 13, 9), lateness_seconds=1800.0
    )


def test_the_latest_occurrence_beyond_its_grace_is_missed_and_the_task_moves_on() -> None:
    # Given a daily task whose latest occurrence came 2 hours ago (grace: 1 hour)
    task = due_task("daily", DAILY, utc(2026, 6, 12, 9))
    now = utc(2026, 6, 12, 11)
    # When the ticker decides
    event = decide_fire(task, now)
    # Then the run is missed, the task is not failed and waits for tomorrow
    assert event == RunMissed(
        task_id=TASK_ID,
        scheduled_for=utc(2026, 6, 12, 9),
        reason=beyond_grace(7200),
        recorded_at=now,
        next_run_time=utc(2026, 6, 13, 9),
        task_failed=False,
    )


def test_a_custom_grace_is_honoured() -> None:
    # Given a task with only 60 s of grace, 61 s late
    task = due_task("daily", DAILY, utc(2026, 6, 12, 9), misfire_grace_seconds=60)
    now = utc(2026, 6, 12, 9, 1, 1)
    # When the ticker decides, Then the run is missed
    assert decide_fire(task, now) == RunMissed(
        task_id=TASK_ID,
        scheduled_for=utc(2026, 6, 12, 9),
        reason=beyond_grace(61, 60),
        recorded_at=now,
        next_run_time=utc(2026, 6, 13, 9),
    )


ONCE = {"run_at": "2026-12-01T14:00:00+01:00"}
ONCE_AT = utc(2026, 12, 1, 13)


def test_a_one_time_task_beyond_its_grace_is_missed_and_failed() -> None:
    # Given a one-time task whose only occurrence came an hour and a second ago
    task = due_task("once", ONCE, ONCE_AT)
    now = ONCE_AT + timedelta(seconds=3601)
    # When the ticker decides
    event = decide_fire(task, now)
    # Then the run is missed and the task has nothing left to run
    assert event == RunMissed(
        task_id=TASK_ID,
        scheduled_for=ONCE_AT,
        reason=beyond_grace(3601),
        recorded_at=now,
        next_run_time=None,
        task_failed=True,
    )


def test_a_one_time_task_at_the_edge_of_its_grace_still_fires() -> None:
    # Given a one-time task exactly an hour late (the grace is inclusive)
    task = due_task("once", ONCE, ONCE_AT)
    now = ONCE_AT + timedelta(seconds=3600)
    # When the ticker decides, Then it fires, 3600 s late
    assert decide_fire(task, now) == fired(
        task, now=now, next_run_time=None, lateness_seconds=3600.0
    )


def test_a_one_time_task_within_its_grace_fires_late() -> None:
    # Given a one-time task 10 minutes late
    task = due_task("once", ONCE, ONCE_AT)
    now = ONCE_AT + timedelta(minutes=10)
    # When the ticker decides, Then it fires with its lateness
    assert decide_fire(task, now) == fired(
        task, now=now, next_run_time=None, lateness_seconds=600.0
    )


EVERY_MINUTE = {"every_seconds": 60}
OUTAGE_START = utc(2026, 6, 10, 0, 0)


def test_more_than_a_hundred_missed_occurrences_are_recorded_together() -> None:
    # Given an every-60-seconds interval armed for 00:00, and a ticker back at 03:00:30:
    # 00:00, 00:01, ..., 02:59 are missed (180 of them) and 03:00 is the latest occurrence
    task = due_task("interval", EVERY_MINUTE, OUTAGE_START)
    now = utc(2026, 6, 10, 3, 0, 30)
    # When the ticker decides
    event = decide_fire(task, now)
    # Then one RunMissed stands for all 180, and the task moves to the latest occurrence
    assert event == RunMissed(
        task_id=TASK_ID,
        scheduled_for=OUTAGE_START,
        reason=OLDER_MISSED,
        recorded_at=now,
        next_run_time=utc(2026, 6, 10, 3, 0),
        missed_count=180,
    )
    # When the ticker decides on that latest occurrence
    latest = at(task, utc(2026, 6, 10, 3, 0))
    # Then it fires, 30 s late, and the interval keeps its phase
    assert decide_fire(latest, now) == fired(
        latest, now=now, next_run_time=utc(2026, 6, 10, 3, 1), lateness_seconds=30.0
    )


def test_up_to_a_hundred_missed_occurrences_are_recorded_one_by_one() -> None:
    # Given exactly MISSED_ONE_BY_ONE missed minutes (00:00 to 01:39) before the latest, 01:40
    assert MISSED_ONE_BY_ONE == 100
    task = due_task("interval", EVERY_MINUTE, OUTAGE_START)
    now = utc(2026, 6, 10, 1, 40)
    # When the ticker decides, Then only the oldest is recorded, moving to the next minute
    assert decide_fire(task, now) == RunMissed(
        task_id=TASK_ID,
        scheduled_for=OUTAGE_START,
        reason=OLDER_MISSED,
        recorded_at=now,
        next_run_time=utc(2026, 6, 10, 0, 1),
    )


def test_a_hundred_and_one_missed_occurrences_are_recorded_together() -> None:
    # Given 101 missed minutes (00:00 to 01:40) before the latest, 01:41
    task = due_task("interval", EVERY_MINUTE, OUTAGE_START)
    now = utc(2026, 6, 10, 1, 41)
    # When the ticker decides, Then they are recorded as one
    assert decide_fire(task, now) == RunMissed(
        task_id=TASK_ID,
        scheduled_for=OUTAGE_START,
        reason=OLDER_MISSED,
        recorded_at=now,
        next_run_time=utc(2026, 6, 10, 1, 41),
        missed_count=101,
    )


def test_a_very_long_outage_converges_to_the_latest_occurrence() -> None:
    # Given an every-second interval down for a whole day (86,400 missed occurrences: more
    # than one decision scans, so it may take a few RunMissed to catch up)
    task = due_task("interval", {"every_seconds": 1}, OUTAGE_START)
    now = utc(2026, 6, 11, 0, 0, 0, 500_000)
    # When the ticker decides again and again, each time on what the last decision left
    missed = 0
    for _ in range(20):
        event = decide_fire(task, now)
        if not isinstance(event, RunMissed):
            break
        assert event.scheduled_for == task.next_run_time
        assert event.next_run_time is not None
        assert task.next_run_time < event.next_run_time <= now
        missed += event.missed_count
        task = at(task, event.next_run_time)
    # Then every missed occurrence is counted once, and the latest one fires
    assert missed == 86_400
    assert event == fired(
        task, now=now, next_run_time=utc(2026, 6, 11, 0, 0, 1), lateness_seconds=0.5
    )


# --- overlap -------------------------------------------------------------------------------


def test_overlap_skip_skips_while_the_previous_run_is_running() -> None:
    # Given a daily task still running yesterday's run, with overlap_policy skip
    task = due_task("daily", DAILY, utc(2026, 6, 12, 9), running_executions=1)
    now = utc(2026, 6, 12, 9, 0, 1)
    # When its occurrence comes
    event = decide_fire(task, now)
    # Then this run is skipped and the task moves on
    assert event == RunSkipped(
        task_id=TASK_ID,
        scheduled_for=utc(2026, 6, 12, 9),
        reason=STILL_RUNNING,
        recorded_at=now,
        next_run_time=utc(2026, 6, 13, 9),
    )


def test_overlap_allow_fires_while_the_previous_run_is_running() -> None:
    # Given the same task with overlap_policy allow and two runs in progress
    task = due_task(
        "daily", DAILY, utc(2026, 6, 12, 9), running_executions=2, overlap_policy="allow"
    )
    now = utc(2026, 6, 12, 9, 0, 1)
    # When its occurrence comes, Then it fires anyway
    assert decide_fire(task, now) == fired(
        task, now=now, next_run_time=utc(2026, 6, 13, 9), lateness_seconds=1.0
    )


def test_overlap_skip_fires_when_nothing_is_running() -> None:
    task = due_task("daily", DAILY, utc(2026, 6, 12, 9), running_executions=0)
    now = utc(2026, 6, 12, 9)
    assert decide_fire(task, now) == fired(task, now=now, next_run_time=utc(2026, 6, 13, 9))


def test_a_skipped_one_time_task_has_nothing_left() -> None:
    # Given a one-time task whose occurrence comes while a manual run is still going
    task = due_task("once", ONCE, ONCE_AT, running_executions=1)
    # When it is decided, Then it is skipped with no next run
    assert decide_fire(task, ONCE_AT) == RunSkipped(
        task_id=TASK_ID,
        scheduled_for=ONCE_AT,
        reason=STILL_RUNNING,
        recorded_at=ONCE_AT,
        next_run_time=None,
    )


# --- jitter --------------------------------------------------------------------------------

HOURLY = {"every_seconds": 3600}
JITTER_START = utc(2026, 6, 10, 9)
TASK_IDS = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"deployx-task-{n}")) for n in range(50)]


def test_no_jitter_fires_at_the_occurrence() -> None:
    task = due_task("interval", HOURLY, JITTER_START, jitter_seconds=0)
    assert fire_at(task, utc(2026, 6, 10, 10)) == JITTER_START
    assert fire_at(task, None) == JITTER_START


@pytest.mark.parametrize("task_id", TASK_IDS[:10])
def test_jitter_stays_within_its_window_and_is_the_same_every_time(task_id: str) -> None:
    # Given an hourly task with 10 minutes of jitter
    task = due_task("interval", HOURLY, JITTER_START, task_id=task_id, jitter_seconds=600)
    following = utc(2026, 6, 10, 10)
    # When its fire time is computed, Then it lies within the jitter window
    planned = fire_at(task, following)
    assert JITTER_START <= planned <= JITTER_START + timedelta(seconds=600)
    # And it is the same every time, at any version and any later occurrence
    assert fire_at(task, following) == planned
    later = msgspec.structs.replace(
        task, version=task.version + 5, next_run_time=utc(2026, 6, 10, 15)
    )
    assert fire_at(later, utc(2026, 6, 10, 16)) - later.next_run_time == planned - JITTER_START


@pytest.mark.parametrize("task_id", TASK_IDS[:10])
def test_jitter_holds_the_run_back_until_its_fire_time(task_id: str) -> None:
    # Given an hourly task with 10 minutes of jitter, and its fire time
    task = due_task("interval", HOURLY, JITTER_START, task_id=task_id, jitter_seconds=600)
    following = utc(2026, 6, 10, 10)
    planned = fire_at(task, following)
    # When the ticker decides before the fire time, Then it waits
    assert decide_fire(task, JITTER_START - timedelta(microseconds=1)) is None
    if planned > JITTER_START:
        assert decide_fire(task, planned - timedelta(microseconds=1)) is None
    # When it decides at the fire time, Then the occurrence fires on time
    assert decide_fire(task, planned) == fired(task, now=planned, next_run_time=following)
    # And a second later it fires a second late
    after = planned + timedelta(seconds=1)
    assert decide_fire(task, after) == fired(
        task, now=after, next_run_time=following, lateness_seconds=1.0
    )


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_jitter_never_reaches_half_way_to_the_next_occurrence(task_id: str) -> None:
    # Given an every-10-seconds task with an hour of jitter
    task = due_task(
        "interval", {"every_seconds": 10}, JITTER_START, task_id=task_id, jitter_seconds=3600
    )
    # When its fire time is computed
    offset = fire_at(task, JITTER_START + timedelta(seconds=10)) - JITTER_START
    # Then it lies before half-way to the next occurrence
    assert timedelta(0) <= offset < timedelta(seconds=5), f"offset {offset} for {task_id}"


def test_jitter_spreads_tasks_out() -> None:
    # Given 50 hourly tasks with 10 minutes of jitter
    offsets = {
        fire_at(
            due_task("interval", HOURLY, JITTER_START, task_id=task_id, jitter_seconds=600),
            utc(2026, 6, 10, 10),
        )
        for task_id in TASK_IDS
    }
    # Then they do not all fire at once (600 s of whole-second offsets: a few may coincide)
    assert len(offsets) >= 40, sorted(offsets)


def test_jitter_capped_by_a_short_interval_still_spreads_tasks_out() -> None:
    # Given 50 every-10-seconds tasks with an hour of jitter (capped below 5 s)
    offsets = {
        fire_at(
            due_task(
                "interval",
                {"every_seconds": 10},
                JITTER_START,
                task_id=task_id,
                jitter_seconds=3600,
            ),
            JITTER_START + timedelta(seconds=10),
        )
        for task_id in TASK_IDS
    }
    # Then the cap does not pile them all up on one instant
    assert len(offsets) >= 25, sorted(offsets)


def test_jitter_of_a_one_time_task_is_bounded_by_the_jitter_alone() -> None:
    # Given one-time tasks with 2 minutes of jitter (no next occurrence to stay clear of)
    for task_id in TASK_IDS:
        task = due_task("once", ONCE, ONCE_AT, task_id=task_id, jitter_seconds=120)
        # Then each fires within those 2 minutes
        planned = fire_at(task, None)
        assert ONCE_AT <= planned <= ONCE_AT + timedelta(seconds=120)


def test_jitter_of_a_daily_task_is_within_its_jitter() -> None:
    # Given daily tasks with 15 minutes of jitter (far below half a day)
    for task_id in TASK_IDS:
        task = due_task("daily", DAILY, utc(2026, 6, 12, 9), task_id=task_id, jitter_seconds=900)
        # Then each fires within those 15 minutes
        planned = fire_at(task, utc(2026, 6, 13, 9))
        assert utc(2026, 6, 12, 9) <= planned <= utc(2026, 6, 12, 9, 15)


# --- interval phase ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "current",
    [
        utc(2026, 6, 10, 9, 0, 0),
        utc(2026, 6, 10, 9, 2, 7),
        # Off any whole second, as a resume or an update at an arbitrary instant leaves it.
        utc(2026, 6, 10, 9, 2, 7, 123_456),
    ],
)
def test_an_interval_without_start_at_counts_on_from_its_current_occurrence(
    current: datetime,
) -> None:
    # Given an every-300-seconds interval whose current occurrence is `current`
    task = due_task("interval", {"every_seconds": 300}, current)
    # When it fires, Then the next occurrence is 300 s on, whatever set the current one
    assert decide_fire(task, current) == fired(
        task, now=current, next_run_time=current + timedelta(seconds=300)
    )
    # And the one after that keeps the same phase
    following = at(task, current + timedelta(seconds=300))
    assert decide_fire(following, following.next_run_time) == fired(
        following, now=following.next_run_time, next_run_time=current + timedelta(seconds=600)
    )


def test_an_interval_with_start_at_keeps_the_phase_of_start_at() -> None:
    # Given an hourly interval started at 00:00:00, whose current occurrence is 05:00
    config = {"every_seconds": 3600, "start_at": "2026-06-10T00:00:00+00:00"}
    task = due_task("interval", config, utc(2026, 6, 10, 5))
    # When it fires, Then the next occurrence is 06:00
    assert decide_fire(task, utc(2026, 6, 10, 5)) == fired(
        task, now=utc(2026, 6, 10, 5), next_run_time=utc(2026, 6, 10, 6)
    )


# --- daylight saving -----------------------------------------------------------------------


def test_a_daily_time_in_the_spring_gap_fires_right_after_the_gap() -> None:
    # Given a daily 02:30 New York task: on 2026-03-08 clocks jump from 02:00 EST to 03:00 EDT,
    # so that day it is due at 03:00 EDT = 07:00 UTC
    task = due_task("daily", {"time": "02:30", "timezone": NEW_YORK}, utc(2026, 3, 8, 7, 0))
    # When it fires
    event = decide_fire(task, utc(2026, 3, 8, 7, 0))
    # Then the next run is 02:30 EDT on 03-09 = 06:30 UTC
    assert event == fired(task, now=utc(2026, 3, 8, 7, 0), next_run_time=utc(2026, 3, 9, 6, 30))


def test_a_daily_time_in_the_repeated_hour_fires_once_at_its_first_pass() -> None:
    # Given a daily 01:30 New York task: on 2026-11-01 clocks fall back from 02:00 EDT to
    # 01:00 EST, so 01:30 occurs twice; the first pass is 01:30 EDT = 05:30 UTC
    task = due_task("daily", {"time": "01:30", "timezone": NEW_YORK}, utc(2026, 11, 1, 5, 30))
    # When it fires
    event = decide_fire(task, utc(2026, 11, 1, 5, 30))
    # Then the second pass (01:30 EST = 06:30 UTC the same day) is not an occurrence: the next
    # run is 01:30 EST on 11-02 = 06:30 UTC
    assert event == fired(task, now=utc(2026, 11, 1, 5, 30), next_run_time=utc(2026, 11, 2, 6, 30))


def test_a_daily_time_after_the_fall_back_is_unambiguous() -> None:
    # Given a daily 02:30 New York task: on 2026-11-01, 02:30 comes once, after the fall back,
    # at 02:30 EST = 07:30 UTC
    task = due_task("daily", {"time": "02:30", "timezone": NEW_YORK}, utc(2026, 11, 1, 7, 30))
    # When it fires, Then the next run is 02:30 EST on 11-02 = 07:30 UTC
    assert decide_fire(task, utc(2026, 11, 1, 7, 30)) == fired(
        task, now=utc(2026, 11, 1, 7, 30), next_run_time=utc(2026, 11, 2, 7, 30)
    )


def test_the_day_before_the_fall_back_goes_to_the_first_pass() -> None:
    # Given a daily 01:30 New York task on 10-31 (01:30 EDT = 05:30 UTC)
    task = due_task("daily", {"time": "01:30", "timezone": NEW_YORK}, utc(2026, 10, 31, 5, 30))
    # When it fires, Then the next run is the first pass of 01:30 on 11-01, 05:30 UTC
    assert decide_fire(task, utc(2026, 10, 31, 5, 30)) == fired(
        task, now=utc(2026, 10, 31, 5, 30), next_run_time=utc(2026, 11, 1, 5, 30)
    )


def test_every_event_decided_is_a_task_event() -> None:
    # decide_fire's result type is the Event base; the events above are its task subclasses
    task = due_task("daily", DAILY, utc(2026, 6, 12, 9))
    event = decide_fire(task, utc(2026, 6, 12, 9))
    assert isinstance(event, Event)
    assert event.type == "TaskDue"
