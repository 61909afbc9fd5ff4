"""Firing near a task's end: end_at (across DST too), max_runs, and the pause a failed scheduled
run owes a task with pause_on_failure. Each test builds the task as the tasks read table holds
it, decides at a given `now` and compares the whole event with one worked out by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from events.task import RunMissed, RunSkipped, TaskDue, TaskPaused
from services.domain.firing import DueTask, FailedRun, decide_fire, decide_pause, event_id
from tests.unit.test_firing import (
    NEW_YORK,
    OLDER_MISSED,
    STILL_RUNNING,
    TASK_ID,
    at,
    beyond_grace,
    due_task,
    fired,
    utc,
)

DAILY_9 = {"time": "09:00"}


def last_run(task: DueTask, *, now: datetime, completed_by: str) -> TaskDue:
    """The TaskDue of the task's last run: no next run, and the limit that ended it."""
    return msgspec.structs.replace(
        fired(task, now=now, next_run_time=None), completed_by=completed_by
    )


def test_the_last_occurrence_before_end_at_fires_and_completes_the_task() -> None:
    # Given a daily 09:00 task that ends at 06-11 18:00
    task = due_task("daily", DAILY_9, utc(2026, 6, 11, 9), end_at=utc(2026, 6, 11, 18))
    # When its 06-11 occurrence fires
    event = decide_fire(task, utc(2026, 6, 11, 9))
    # Then it has no next run (06-12 is past end_at) and says end_at ended it
    assert event == last_run(task, now=utc(2026, 6, 11, 9), completed_by="end_at")


def test_an_occurrence_exactly_at_end_at_still_fires() -> None:
    task = due_task("daily", DAILY_9, utc(2026, 6, 11, 9), end_at=utc(2026, 6, 12, 9))
    assert decide_fire(task, utc(2026, 6, 11, 9)) == fired(
        task, now=utc(2026, 6, 11, 9), next_run_time=utc(2026, 6, 12, 9)
    )


def test_end_at_in_the_repeated_hour_of_fall_back_ends_after_the_first_pass() -> None:
    # Given an hourly :30 cron in New York ending at 01:45 EST on 2026-11-01 (06:45Z). The
    # clocks go back at 02:00 EDT: 01:30 EDT (05:30Z) runs, 01:30 EST (06:30Z) is the same wall
    # time again and does not, the next is 02:30 EST (07:30Z), past end_at.
    config = {"cron": "30 * * * *", "timezone": NEW_YORK}
    task = due_task("custom", config, utc(2026, 11, 1, 5, 30), end_at=utc(2026, 11, 1, 6, 45))
    # When 01:30 EDT fires, Then it is the last run
    assert decide_fire(task, utc(2026, 11, 1, 5, 30)) == last_run(
        task, now=utc(2026, 11, 1, 5, 30), completed_by="end_at"
    )


def test_end_at_at_the_end_of_a_spring_forward_gap_keeps_the_occurrence_moved_there() -> None:
    # Given a daily 02:30 New York task; on 2026-03-08 02:30 does not exist and runs at 03:00
    # EDT (07:00Z), which is also its end_at (as "2026-03-08T02:30" in the zone resolves)
    config = {"time": "02:30", "timezone": NEW_YORK}
    task = due_task("daily", config, utc(2026, 3, 7, 7, 30), end_at=utc(2026, 3, 8, 7))
    # When 03-07 fires, Then the next run is the moved 03-08 one
    first = decide_fire(task, utc(2026, 3, 7, 7, 30))
    assert first == fired(task, now=utc(2026, 3, 7, 7, 30), next_run_time=utc(2026, 3, 8, 7))
    # When that one fires, Then it is the last
    last = at(task, utc(2026, 3, 8, 7))
    assert decide_fire(last, utc(2026, 3, 8, 7)) == last_run(
        last, now=utc(2026, 3, 8, 7), completed_by="end_at"
    )


def test_max_runs_counts_the_scheduled_runs_and_the_last_one_completes_the_task() -> None:
    # Given an interval task with max_runs 2 that has not run on schedule yet
    task = due_task("interval", {"every_seconds": 60}, utc(2026, 6, 1, 12, 1), max_runs=2)
    # When its first occurrence fires, Then it goes on to the next
    assert decide_fire(task, utc(2026, 6, 1, 12, 1)) == fired(
        task, now=utc(2026, 6, 1, 12, 1), next_run_time=utc(2026, 6, 1, 12, 2)
    )
    # When the second fires (one scheduled run made, whatever ran by hand meanwhile)
    second = msgspec.structs.replace(at(task, utc(2026, 6, 1, 12, 2)), scheduled_runs=1)
    # Then it is the last: no next run, completed by max_runs
    assert decide_fire(second, utc(2026, 6, 1, 12, 2)) == last_run(
        second, now=utc(2026, 6, 1, 12, 2), completed_by="max_runs"
    )


def test_max_runs_of_one_makes_the_first_run_the_last() -> None:
    task = due_task("daily", DAILY_9, utc(2026, 6, 11, 9), max_runs=1)
    event = decide_fire(task, utc(2026, 6, 11, 9))
    assert event == last_run(task, now=utc(2026, 6, 11, 9), completed_by="max_runs")


def test_a_skipped_run_with_nothing_left_before_end_at_completes_the_task() -> None:
    # Given a daily task whose previous run still runs, and whose end_at is before tomorrow
    task = due_task(
        "daily", DAILY_9, utc(2026, 6, 11, 9), end_at=utc(2026, 6, 11, 12), running_executions=1
    )
    # When its last occurrence comes, Then it is skipped, and nothing is left
    assert decide_fire(task, utc(2026, 6, 11, 9)) == RunSkipped(
        task_id=TASK_ID,
        scheduled_for=utc(2026, 6, 11, 9),
        reason=STILL_RUNNING,
        recorded_at=utc(2026, 6, 11, 9),
        next_run_time=None,
        completed_by="end_at",
    )


def test_downtime_past_end_at_misses_up_to_it_and_completes_the_task() -> None:
    # Given a daily 09:00 task ending 06-11 13:00, last armed for 06-10; the ticker is back
    # only on 06-12 at 10:00 (06-12 09:00 is past end_at, so it is no occurrence at all)
    now = utc(2026, 6, 12, 10)
    task = due_task("daily", DAILY_9, utc(2026, 6, 10, 9), end_at=utc(2026, 6, 11, 13))
    # When it decides, Then 06-10 is missed for the later 06-11
    assert decide_fire(task, now) == RunMissed(
        task_id=TASK_ID,
        scheduled_for=utc(2026, 6, 10, 9),
        reason=OLDER_MISSED,
        recorded_at=now,
        next_run_time=utc(2026, 6, 11, 9),
    )
    # When it decides on 06-11, 25 hours late, Then it is missed and the task is completed
    latest = at(task, utc(2026, 6, 11, 9))
    assert decide_fire(latest, now) == RunMissed(
        task_id=TASK_ID,
        scheduled_for=utc(2026, 6, 11, 9),
        reason=beyond_grace(90000),
        recorded_at=now,
        next_run_time=None,
        completed_by="end_at",
    )


def test_a_jitter_held_last_run_still_fires_within_its_jitter() -> None:
    # Given the last occurrence before end_at, held back by a 30 s jitter
    task = due_task(
        "daily", DAILY_9, utc(2026, 6, 11, 9), end_at=utc(2026, 6, 11, 9), jitter_seconds=30
    )
    # When the ticker decides at the occurrence, Then jitter holds it (or fires it); at 30 s
    # it has fired for sure, as the task's last run
    now = utc(2026, 6, 11, 9) + timedelta(seconds=30)
    event = decide_fire(task, now)
    assert isinstance(event, TaskDue)
    assert (event.next_run_time, event.completed_by) == (None, "end_at")


# --- pause_on_failure -------------------------------------------------------------------------


def failed_run(version: int = 4, error: str | None = "1 of 2 devices did not succeed") -> FailedRun:
    return FailedRun(
        task_id=TASK_ID,
        version=version,
        task_type="command",
        execution_id="9a1e8c1c-3c2f-4a55-8a4e-3b2f1d0c9e77",
        error_message=error,
    )


def test_a_failed_scheduled_run_pauses_its_task_saying_which_run_and_why() -> None:
    now = utc(2026, 6, 11, 9, 5)
    # Given a failed scheduled run owed a pause, When the ticker decides
    event, reason = decide_pause(failed_run(), now)
    # Then the task is paused, and the reason names the run and its error
    assert event == TaskPaused(task_id=TASK_ID, paused_at=now)
    assert reason == (
        "run 9a1e8c1c-3c2f-4a55-8a4e-3b2f1d0c9e77 failed: 1 of 2 devices did not succeed"
    )


def test_a_failure_without_an_error_message_still_gives_a_reason() -> None:
    _, reason = decide_pause(failed_run(error=None), utc(2026, 6, 11, 9, 5))
    assert reason == "run 9a1e8c1c-3c2f-4a55-8a4e-3b2f1d0c9e77 failed: no error message"


def test_the_pause_has_the_id_of_whatever_the_ticker_decides_at_that_version() -> None:
    # Two tickers owing the same pause at the same version name the same event; a fire the
    # other ticker decided at that version has that id too, so only one of them goes in.
    due = due_task("daily", DAILY_9, utc(2026, 6, 11, 9), version=4)
    assert event_id(failed_run()) == event_id(failed_run()) == event_id(due)
    assert event_id(failed_run(version=5)) != event_id(failed_run())


def test_a_task_without_limits_is_not_ended() -> None:
    task = due_task("daily", DAILY_9, utc(2026, 6, 11, 9))
    event = decide_fire(task, utc(2026, 6, 11, 9))
    assert event == fired(task, now=utc(2026, 6, 11, 9), next_run_time=utc(2026, 6, 12, 9))
