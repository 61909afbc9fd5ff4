"""The task aggregate's end and delivery: end_at, max_runs, the completed state, the delivery
policy and pause_on_failure as stored. Given past events, when a command at `now`, then events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from events.execution import Delivery
from events.task import TaskCreated, TaskDue, TaskPaused, TaskResumed
from services.domain.errors import Conflict
from services.domain.task import ExecuteNow, PauseTask, ResumeTask, TaskState, decide
from tests.unit.test_task_domain import (
    BERLIN,
    DAILY,
    LATER,
    NEW_YORK,
    PAUSED,
    TASK_ID,
    create,
    given,
    task_created,
    then_invalid,
    then_rejected,
    update,
    updated,
    utc,
)

# The daily 14:00 Berlin task of test_task_domain (12:00 UTC in June), created at NOW.
FIRST_RUN = utc(2026, 6, 1, 12)


def fired(scheduled_for: datetime, next_run_time: datetime | None, **fields: Any) -> TaskDue:
    """The ticker's TaskDue for an occurrence of TASK_ID."""
    return TaskDue(
        task_id=TASK_ID,
        execution_id=f"exec-{scheduled_for:%m%d%H%M}",
        scheduled_for=scheduled_for,
        trigger="schedule",
        due_at=scheduled_for,
        next_run_time=next_run_time,
        **fields,
    )


def ran_now(now: datetime, next_run_time: datetime | None) -> TaskDue:
    return TaskDue(
        task_id=TASK_ID,
        execution_id=f"manual-{now:%m%d%H%M}",
        scheduled_for=now,
        trigger="manual",
        due_at=now,
        next_run_time=next_run_time,
    )


# --- on create --------------------------------------------------------------------------------


def test_create_stores_delivery_end_at_max_runs_and_pause_on_failure() -> None:
    # Given nothing, When a task is created with all four
    events = decide(
        given(),
        create(
            delivery={"waves": [1, "50%"], "max_concurrency": 1, "max_errors": "10%"},
            end_at="2026-06-30T18:00:00+02:00",
            max_runs=5,
            pause_on_failure=True,
        ),
    )
    # Then TaskCreated holds them: the policy as the run's Delivery, end_at as an instant
    assert events == [
        task_created(
            delivery=Delivery(waves=[1, "50%"], max_concurrency=1, max_errors="10%"),
            end_at=utc(2026, 6, 30, 16),
            max_runs=5,
            pause_on_failure=True,
        )
    ]
    assert type(events[0].delivery) is Delivery  # type: ignore[attr-defined]


def test_create_without_them_keeps_the_earlier_meaning() -> None:
    # Given nothing, When a task is created as before these fields existed
    [created] = decide(given(), create())
    # Then every device at once, no end, no limit, no pause on failure
    assert isinstance(created, TaskCreated)
    assert (created.delivery, created.end_at, created.max_runs, created.pause_on_failure) == (
        Delivery(),
        None,
        None,
        False,
    )


@pytest.mark.parametrize(
    ("delivery", "field", "says"),
    [
        ({"max_concurrency": 0}, "delivery.max_concurrency", "from 1 to 1000000"),
        ({"max_concurrency": "0%"}, "delivery.max_concurrency", "from 1% to 100%"),
        ({"max_errors": "101%"}, "delivery.max_errors", "from 0% to 100%"),
        ({"waves": [1, "x"]}, "delivery.waves[1]", "percentage"),
        ({"offline_wait_seconds": -1}, "delivery.offline_wait_seconds", "between 0 and"),
        ({"wave_pause_seconds": 10**9}, "delivery.wave_pause_seconds", "between 0 and"),
    ],
)
def test_create_with_a_bad_delivery_names_the_field(
    delivery: dict[str, Any], field: str, says: str
) -> None:
    then_invalid(given(), create(delivery=delivery), field, says)


def test_create_with_end_at_before_the_first_occurrence_names_end_at() -> None:
    # Given a daily 14:00 Berlin task created at 12:00, whose first run is today at 14:00,
    # When its end_at is 13:59 today, Then no run would ever happen: a 422 on end_at
    then_invalid(
        given(),
        create(end_at="2026-06-01T13:59:00+02:00"),
        "end_at",
        "is before the task's first occurrence (2026-06-01T12:00:00+00:00)",
    )


def test_create_with_end_at_at_the_first_occurrence_runs_once() -> None:
    [created] = decide(given(), create(end_at="2026-06-01T14:00:00+02:00"))
    assert isinstance(created, TaskCreated)
    assert (created.next_run_time, created.end_at) == (FIRST_RUN, FIRST_RUN)


def test_create_with_end_at_out_of_range_names_end_at() -> None:
    then_invalid(given(), create(end_at="9999-01-01T00:00:00Z"), "end_at", "must lie between")


@pytest.mark.parametrize(
    ("wall", "zone", "instant"),
    [
        # An ordinary summer evening in Berlin (CEST, UTC+2).
        ("2026-06-30T20:00:00", BERLIN, utc(2026, 6, 30, 18)),
        # 02:30 on 2026-03-08 does not exist in New York: the gap ends at 03:00 EDT (07:00Z).
        ("2026-03-08T02:30:00", NEW_YORK, utc(2026, 3, 8, 7)),
        # 01:30 on 2026-11-01 happens twice in New York: the first, EDT (05:30Z), counts.
        ("2026-11-01T01:30:00", NEW_YORK, utc(2026, 11, 1, 5, 30)),
        # 02:30 on 2026-10-25 happens twice in Berlin: the first, CEST (00:30Z), counts.
        ("2026-10-25T02:30:00", BERLIN, utc(2026, 10, 25, 0, 30)),
    ],
)
def test_end_at_without_an_offset_is_wall_time_in_the_tasks_zone(
    wall: str, zone: str, instant: datetime
) -> None:
    # Given a task in `zone` created early in 2026, When end_at is a wall time without offset
    now = utc(2026, 1, 5)
    [created] = decide(
        given(), create(now, recurrence_config={"time": "00:00", "timezone": zone}, end_at=wall)
    )
    # Then it is that wall time's instant under the DST rules
    assert isinstance(created, TaskCreated)
    assert created.end_at == instant


# --- counting runs, ending ------------------------------------------------------------------


def test_a_scheduled_fire_counts_toward_max_runs_and_execute_now_does_not() -> None:
    # Given a daily task that ran once now and once on schedule
    state = given(
        DAILY,
        ran_now(LATER, FIRST_RUN),
        fired(FIRST_RUN, utc(2026, 6, 2, 12)),
        ran_now(utc(2026, 6, 1, 13), utc(2026, 6, 2, 12)),
    )
    # Then only the scheduled one is counted
    assert state.scheduled_runs == 1
    assert not state.finished


def test_the_run_that_ends_a_task_leaves_it_completed_with_nothing_to_pause() -> None:
    # Given a task with max_runs 1 whose only scheduled run fired, ending it
    state = given(task_created(max_runs=1), fired(FIRST_RUN, None, completed_by="max_runs"))
    # Then it is finished, completed by max_runs, with no next run
    assert state == TaskState(
        task_id=TASK_ID,
        version=2,
        spec=task_created(max_runs=1),
        finished=True,
        next_run_time=None,
        scheduled_runs=1,
        completed_by="max_runs",
    )
    # When it is paused, Then that is a conflict that says why
    then_rejected(state, PauseTask(now=LATER), Conflict, "has ended (its max_runs)")
    # When it is run now, Then that is allowed and keeps it ended
    now = utc(2026, 6, 2)
    [manual] = decide(state, ExecuteNow(execution_id="manual", now=now))
    assert manual == TaskDue(
        task_id=TASK_ID,
        execution_id="manual",
        scheduled_for=now,
        trigger="manual",
        due_at=now,
        next_run_time=None,
    )
    after = given(task_created(max_runs=1), fired(FIRST_RUN, None, completed_by="max_runs"), manual)
    assert (after.scheduled_runs, after.completed_by, after.next_run_time) == (1, "max_runs", None)


# --- changing the end with PUT ----------------------------------------------------------------


def test_update_end_at_before_the_next_occurrence_completes_the_task() -> None:
    # Given a daily task due today at 14:00 Berlin, When end_at becomes 13:30 today
    events = decide(given(DAILY), update(end_at="2026-06-01T13:30:00+02:00"))
    # Then it has no next run and is completed by its end_at
    assert events == [
        updated(end_at=utc(2026, 6, 1, 11, 30), next_run_time=None, completed_by="end_at")
    ]
    state = given(DAILY, *events)
    assert (state.finished, state.completed_by) == (True, "end_at")


def test_update_end_at_after_the_next_occurrence_keeps_it() -> None:
    events = decide(given(DAILY), update(end_at="2026-06-10T00:00:00Z"))
    assert events == [updated(end_at=utc(2026, 6, 10), next_run_time=FIRST_RUN)]


def test_update_removing_the_end_of_an_ended_task_arms_it_again_from_now() -> None:
    # Given a task its end_at ended, When end_at is set to null on 06-03 at 15:00 Berlin
    ended = updated(end_at=utc(2026, 6, 1, 11, 30), next_run_time=None, completed_by="end_at")
    now = utc(2026, 6, 3, 13)
    events = decide(given(DAILY, ended), update(now, end_at=None))
    # Then it runs again at the next occurrence after now (06-04 14:00 Berlin)
    assert events == [
        updated(updated_at=now, end_at=None, next_run_time=utc(2026, 6, 4, 12), rearmed=True)
    ]
    state = given(DAILY, ended, *events)
    assert (state.finished, state.completed_by) == (False, None)
    assert decide(state, PauseTask(now=now)) == [TaskPaused(task_id=TASK_ID, paused_at=now)]


def test_update_max_runs_to_runs_already_made_completes_the_task() -> None:
    # Given a daily task that ran twice on schedule
    history = (DAILY, fired(FIRST_RUN, utc(2026, 6, 2, 12)))
    second = fired(utc(2026, 6, 2, 12), utc(2026, 6, 3, 12))
    now = utc(2026, 6, 2, 15)
    # When max_runs becomes 2
    events = decide(given(*history, second), update(now, max_runs=2))
    # Then it ends, completed by max_runs
    assert events == [
        updated(updated_at=now, max_runs=2, next_run_time=None, completed_by="max_runs")
    ]
    # When max_runs is raised to 3 later, Then it runs again at the next occurrence
    later = utc(2026, 6, 4, 15)
    ended = given(*history, second, *events)
    assert decide(ended, update(later, max_runs=3)) == [
        updated(updated_at=later, max_runs=3, next_run_time=utc(2026, 6, 5, 12), rearmed=True)
    ]


def test_update_of_other_fields_leaves_an_ended_task_ended() -> None:
    ended = updated(end_at=utc(2026, 6, 1, 11, 30), next_run_time=None, completed_by="end_at")
    events = decide(given(DAILY, ended), update(name="renamed"))
    assert events == [updated(name="renamed", next_run_time=None, completed_by="end_at")]
    assert given(DAILY, ended, *events).completed_by == "end_at"


def test_update_delivery_replaces_the_whole_policy() -> None:
    # Given a task with waves and a concurrency limit
    state = given(task_created(delivery=Delivery(waves=[1], max_concurrency=1)))
    # When its delivery is set to an error threshold alone
    events = decide(state, update(delivery={"max_errors": 2}))
    # Then the new policy is that alone, checked and stored as the run's Delivery
    assert events == [updated(delivery=Delivery(max_errors=2), next_run_time=FIRST_RUN)]
    assert given(task_created(), *events).spec == task_created(delivery=Delivery(max_errors=2))


def test_update_with_a_bad_delivery_names_the_field() -> None:
    then_invalid(
        given(DAILY),
        update(delivery={"max_concurrency": "150%"}),
        "delivery.max_concurrency",
        "100%",
    )


def test_update_pause_on_failure_is_stored() -> None:
    events = decide(given(DAILY), update(pause_on_failure=True))
    assert events == [updated(pause_on_failure=True, next_run_time=FIRST_RUN)]
    spec = given(DAILY, *events).spec
    assert spec is not None
    assert spec.pause_on_failure


# --- paused tasks -----------------------------------------------------------------------------


def test_a_paused_task_given_an_end_stays_paused_and_resume_says_why_it_cannot() -> None:
    # Given a paused task, When its end_at is set to a time already past
    events = decide(given(DAILY, PAUSED), update(end_at="2026-06-01T12:30:00+02:00"))
    # Then it stays paused, without next run
    assert events == [updated(end_at=utc(2026, 6, 1, 10, 30), next_run_time=None)]
    state = given(DAILY, PAUSED, *events)
    # When it is resumed, Then that is a conflict naming end_at
    then_rejected(state, ResumeTask(now=utc(2026, 6, 2)), Conflict, "end_at (2026-06-01T10:30")


def test_resume_of_a_task_that_had_its_max_runs_conflicts() -> None:
    history = (task_created(max_runs=3), fired(FIRST_RUN, utc(2026, 6, 2, 12)), PAUSED)
    lowered = updated(max_runs=1, next_run_time=None)
    assert decide(given(*history), update(max_runs=1)) == [lowered]
    then_rejected(
        given(*history, lowered), ResumeTask(now=utc(2026, 6, 3)), Conflict, "max_runs (1)"
    )


def test_resume_before_the_end_goes_on_as_before() -> None:
    state = given(task_created(end_at=utc(2026, 6, 5)), PAUSED)
    assert decide(state, ResumeTask(now=utc(2026, 6, 3, 13))) == [
        TaskResumed(
            task_id=TASK_ID, resumed_at=utc(2026, 6, 3, 13), next_run_time=utc(2026, 6, 4, 12)
        )
    ]
