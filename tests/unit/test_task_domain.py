"""The task aggregate: given past events, when a command at an explicit `now`, then these events."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from events.base import Event
from events.task import (
    RunMissed,
    RunSkipped,
    TaskCreated,
    TaskDeleted,
    TaskDue,
    TaskPaused,
    TaskResumed,
    TaskUpdated,
)
from services.domain.errors import Conflict, DomainError, NotFound, ValidationFailed
from services.domain.kinds.command import CommandPayload
from services.domain.task import (
    CreateTask,
    DeleteTask,
    ExecuteNow,
    PauseTask,
    ResumeTask,
    TaskCommand,
    TaskState,
    UpdateTask,
    decide,
    fold,
)
from services.domain.task_spec import (
    TaskInput,
    TaskPatch,
    from_msgspec_error,
)

TASK_ID = "task-1"
USER = "alice"
BERLIN = "Europe/Berlin"  # UTC+2 (CEST) all through June 2026
NEW_YORK = "America/New_York"  # UTC-4 (EDT) all through June 2026
KOLKATA = "Asia/Kolkata"  # UTC+5:30, no DST


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


NOW = utc(2026, 6, 1, 10)  # Monday 2026-06-01, 12:00 in Berlin
LATER = utc(2026, 6, 1, 11)  # 13:00 in Berlin, still before the daily 14:00 run

UPTIME = {"command_payload": {"command": "uptime"}}
UPTIME_FILLED = {
    "command_payload": {
        "command": "uptime",
        "shell": "bash",
        "timeout_seconds": 300,
        "env": {},
        "working_dir": None,
    }
}


# --- given / when / then ----------------------------------------------------------------------


def given(*events: Event) -> TaskState:
    """The state of TASK_ID after these past events."""
    return fold(TASK_ID, list(events))


def then_rejected(
    state: TaskState, command: TaskCommand, error: type[DomainError], says: str
) -> DomainError:
    """Asserts that `command` is refused with exactly `error` and a message containing `says`."""
    with pytest.raises(error, match=re.escape(says)) as caught:
        decide(state, command)
    assert type(caught.value) is error
    return caught.value


def then_invalid(state: TaskState, command: TaskCommand, field: str, says: str) -> None:
    """Asserts a ValidationFailed naming `field`, with a reason containing `says`."""
    failed = then_rejected(state, command, ValidationFailed, says)
    assert isinstance(failed, ValidationFailed)
    assert failed.field == field, failed.message
    assert failed.message == f"{field}: {failed.reason}"


def task_created(**fields: Any) -> TaskCreated:
    """A past TaskCreated: by default a command task, daily at 14:00 Berlin, created at NOW."""
    defaults: dict[str, Any] = {
        "task_id": TASK_ID,
        "user_id": USER,
        "name": "uptime check",
        "task_type": "command",
        "recurrence_type": "daily",
        "recurrence_config": {"time": "14:00", "timezone": BERLIN},
        "task_payload": UPTIME_FILLED,
        "created_at": NOW,
        "next_run_time": utc(2026, 6, 1, 12),
    }
    return TaskCreated(**(defaults | fields))


def create(now: datetime = NOW, **task: Any) -> CreateTask:
    """CreateTask with a body decoded as the API decodes it (so field constraints apply)."""
    body: dict[str, Any] = {
        "name": "uptime check",
        "task_type": "command",
        "recurrence_type": "daily",
        "recurrence_config": {"time": "14:00", "timezone": BERLIN},
        "task_payload": UPTIME,
    }
    return CreateTask(user_id=USER, task=msgspec.convert(body | task, TaskInput), now=now)


def update(now: datetime = LATER, **patch: Any) -> UpdateTask:
    return UpdateTask(patch=msgspec.convert(patch, TaskPatch), now=now)


def updated(**fields: Any) -> TaskUpdated:
    defaults: dict[str, Any] = {"task_id": TASK_ID, "updated_at": LATER}
    return TaskUpdated(**(defaults | fields))


DAILY = task_created()
ONCE = task_created(
    recurrence_type="once",
    recurrence_config={"run_at": "2026-06-02T09:30:00+02:00", "timezone": "UTC"},
    next_run_time=utc(2026, 6, 2, 7, 30),
)
ONCE_FIRED = TaskDue(
    task_id=TASK_ID,
    execution_id="exec-once",
    scheduled_for=utc(2026, 6, 2, 7, 30),
    trigger="schedule",
    due_at=utc(2026, 6, 2, 7, 30),
    next_run_time=None,
)
PAUSED = TaskPaused(task_id=TASK_ID, paused_at=LATER)
DELETED = TaskDeleted(task_id=TASK_ID, deleted_at=LATER)


# --- CreateTask -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task_type", "payload", "filled"),
    [
        pytest.param("command", UPTIME, UPTIME_FILLED, id="command"),
        pytest.param(
            "software_deployment",
            {"software_payload": {"package": "nginx", "version": "1.26"}},
            {
                "software_payload": {
                    "package": "nginx",
                    "version": "1.26",
                    "action": "install",
                    "manager": None,
                    "timeout_seconds": 1800,
                }
            },
            id="software_deployment",
        ),
        pytest.param(
            "file_deployment",
            {"file_payload": {"file_id": "f-1", "destination": "/etc/motd", "mode": "0600"}},
            {
                "file_payload": {
                    "file_id": "f-1",
                    "destination": "/etc/motd",
                    "mode": "0600",
                    "owner": None,
                    "timeout_seconds": 600,
                }
            },
            id="file_deployment",
        ),
    ],
)
def test_create_each_task_type_fills_payload_defaults(
    task_type: str, payload: dict[str, Any], filled: dict[str, Any]
) -> None:
    events = decide(given(), create(task_type=task_type, task_payload=payload))

    assert events == [task_created(task_type=task_type, task_payload=filled)]


@pytest.mark.parametrize(
    ("recurrence_type", "config", "canonical", "next_run"),
    [
        pytest.param(
            "once",
            {"run_at": "2026-06-02T09:30:00+02:00"},
            {"run_at": "2026-06-02T09:30:00+02:00", "timezone": "UTC"},
            utc(2026, 6, 2, 7, 30),
            id="once-with-offset",
        ),
        pytest.param(
            "once",
            {"run_at": "2026-06-02T09:30:00", "timezone": BERLIN},
            {"run_at": "2026-06-02T09:30:00", "timezone": BERLIN},
            utc(2026, 6, 2, 7, 30),
            id="once-wall-clock-in-zone",
        ),
        pytest.param(
            "daily",
            {"time": "14:00", "timezone": BERLIN},
            {"time": "14:00", "timezone": BERLIN},
            utc(2026, 6, 1, 12),
            id="daily-later-today",
        ),
        pytest.param(
            "daily",
            {"time": "9:05"},
            {"time": "09:05", "timezone": "UTC"},
            utc(2026, 6, 2, 9, 5),
            id="daily-already-passed-today",
        ),
        pytest.param(
            "weekly",
            {"time": "09:00", "days": [5, 3, 3], "timezone": NEW_YORK},
            {"time": "09:00", "days": [3, 5], "timezone": NEW_YORK},
            utc(2026, 6, 3, 13),  # Monday 06:00 EDT now; Wednesday 09:00 EDT
            id="weekly",
        ),
        pytest.param(
            "weekly",
            {"time": "08:00", "days": [7]},
            {"time": "08:00", "days": [0], "timezone": "UTC"},
            utc(2026, 6, 7, 8),  # 7 is Sunday, stored as 0
            id="weekly-sunday-as-7",
        ),
        pytest.param(
            "monthly",
            {"time": "12:00", "day_of_month": 31, "timezone": KOLKATA},
            {"time": "12:00", "day_of_month": 31, "timezone": KOLKATA},
            utc(2026, 6, 30, 6, 30),  # June has 30 days: its last day, 12:00 IST
            id="monthly-past-month-end",
        ),
        pytest.param(
            "custom",
            {"cron": " 0  8,12,18 * * 1-5 "},
            {"cron": "0 8,12,18 * * 1-5", "timezone": "UTC"},
            utc(2026, 6, 1, 12),
            id="custom",
        ),
        pytest.param(
            "interval",
            {"every_seconds": 300},
            {"every_seconds": 300, "timezone": "UTC"},
            utc(2026, 6, 1, 10, 5),  # anchored at creation
            id="interval",
        ),
        pytest.param(
            "interval",
            {"every_seconds": 3600, "start_at": "2026-06-01T09:00:00+00:00"},
            {"every_seconds": 3600, "timezone": "UTC", "start_at": "2026-06-01T09:00:00+00:00"},
            utc(2026, 6, 1, 11),  # 09:00, 10:00 (== now, not after), 11:00
            id="interval-with-start_at",
        ),
    ],
)
def test_create_each_recurrence_type(
    recurrence_type: str, config: dict[str, Any], canonical: dict[str, Any], next_run: datetime
) -> None:
    events = decide(given(), create(recurrence_type=recurrence_type, recurrence_config=config))

    assert events == [
        task_created(
            recurrence_type=recurrence_type, recurrence_config=canonical, next_run_time=next_run
        )
    ]


def test_create_daily_into_the_spring_forward_gap_runs_when_the_gap_ends() -> None:
    # Berlin skips 02:00-03:00 on Sunday 2026-03-29; 02:30 maps to 03:00 CEST = 01:00Z.
    now = utc(2026, 3, 28, 12)
    config = {"time": "02:30", "timezone": BERLIN}

    events = decide(given(), create(now, recurrence_config=config))

    assert events == [
        task_created(recurrence_config=config, created_at=now, next_run_time=utc(2026, 3, 29, 1))
    ]


def test_create_keeps_every_field_and_dedupes_targets_in_order() -> None:
    command = create(
        description="checks load",
        device_ids=["web-2", "web-1", "web-2", "db-1", "web-1"],
        group_ids=[3, 1, 3, 2, 1],
        misfire_grace_seconds=60,
        overlap_policy="allow",
        jitter_seconds=5,
    )

    events = decide(given(), command)

    assert events == [
        task_created(
            description="checks load",
            device_ids=["web-2", "web-1", "db-1"],
            group_ids=[3, 1, 2],
            misfire_grace_seconds=60,
            overlap_policy="allow",
            jitter_seconds=5,
        )
    ]


@pytest.mark.parametrize(
    "run_at",
    ["2026-06-01T09:59:00+00:00", "2026-06-01T10:00:00+00:00", "2026-06-01T11:30:00+02:00"],
    ids=["a-minute-ago", "exactly-now", "earlier-in-another-offset"],
)
def test_create_once_in_the_past_names_run_at(run_at: str) -> None:
    command = create(recurrence_type="once", recurrence_config={"run_at": run_at})

    then_invalid(given(), command, "recurrence_config.run_at", "is in the past")


def test_create_with_a_bad_recurrence_config_names_the_field() -> None:
    command = create(recurrence_type="weekly", recurrence_config={"time": "09:00"})

    then_invalid(given(), command, "recurrence_config.days", "is required for weekly recurrence")


@pytest.mark.parametrize(
    ("task_type", "payload", "field", "says"),
    [
        pytest.param(
            "command",
            {"software_payload": {"package": "nginx"}},
            "task_payload.software_payload",
            "not allowed for a command task",
            id="other-types-payload",
        ),
        pytest.param(
            "software_deployment",
            {"software_payload": {"package": "nginx"}, "command_payload": {"command": "ls"}},
            "task_payload.command_payload",
            "not allowed for a software_deployment task",
            id="extra-payload-beside-the-right-one",
        ),
        pytest.param(
            "file_deployment",
            {},
            "task_payload.file_payload",
            "is required for a file_deployment task",
            id="missing-payload",
        ),
        pytest.param(
            "command",
            {"command_payload": {"shell": "sh"}},
            "task_payload.command_payload.command",
            "is required",
            id="missing-field",
        ),
        pytest.param(
            "command",
            {"command_payload": {"command": "ls", "sudo": True}},
            "task_payload.command_payload.sudo",
            "is not a known field",
            id="unknown-field",
        ),
        pytest.param(
            "command",
            {"command_payload": {"command": "ls", "timeout_seconds": "60"}},
            "task_payload.command_payload.timeout_seconds",
            "must be a whole number, not text",
            id="wrong-type",
        ),
        pytest.param(
            "software_deployment",
            {"software_payload": {"package": "nginx", "action": "reinstall"}},
            "task_payload.software_payload.action",
            "must be one of install, uninstall, upgrade, got 'reinstall'",
            id="not-an-allowed-value",
        ),
        pytest.param(
            "file_deployment",
            {"file_payload": {"file_id": "f-1", "destination": "etc/motd"}},
            "task_payload.file_payload.destination",
            "must be an absolute path, starting with /",
            id="relative-destination",
        ),
    ],
)
def test_create_with_a_wrong_payload_names_the_field(
    task_type: str, payload: dict[str, Any], field: str, says: str
) -> None:
    command = create(task_type=task_type, task_payload=payload)

    then_invalid(given(), command, field, says)


def test_create_an_existing_task_conflicts() -> None:
    then_rejected(given(DAILY), create(LATER), Conflict, f"task {TASK_ID} already exists")


def test_create_over_a_deleted_task_conflicts_since_its_id_is_taken() -> None:
    then_rejected(given(DAILY, DELETED), create(LATER), Conflict, "already exists")


def test_created_task_is_pending_with_its_next_run() -> None:
    assert given(DAILY) == TaskState(
        task_id=TASK_ID, version=1, spec=DAILY, next_run_time=utc(2026, 6, 1, 12)
    )


# --- UpdateTask -------------------------------------------------------------------------------


def test_update_name_only_keeps_next_run_time() -> None:
    events = decide(given(DAILY), update(name="load check"))

    assert events == [updated(name="load check", next_run_time=utc(2026, 6, 1, 12))]


def test_update_a_subset_changes_only_those_fields_and_dedupes_targets() -> None:
    command = update(
        description="new",
        device_ids=["b", "a", "b"],
        group_ids=[2, 2, 1],
        misfire_grace_seconds=0,
        overlap_policy="allow",
        jitter_seconds=30,
    )

    events = decide(given(DAILY), command)

    assert events == [
        updated(
            description="new",
            device_ids=["b", "a"],
            group_ids=[2, 1],
            misfire_grace_seconds=0,
            overlap_policy="allow",
            jitter_seconds=30,
            next_run_time=utc(2026, 6, 1, 12),
        )
    ]


def test_updated_fields_replace_those_of_the_spec() -> None:
    change = updated(name="load check", device_ids=["a"], next_run_time=utc(2026, 6, 1, 12))

    state = given(DAILY, change)

    expected_spec = task_created(name="load check", device_ids=["a"])
    assert state == TaskState(
        task_id=TASK_ID, version=2, spec=expected_spec, next_run_time=utc(2026, 6, 1, 12)
    )


def test_update_recurrence_config_recomputes_next_run_from_now() -> None:
    # Now is 13:00 in Berlin, so 08:00 is tomorrow's: 2026-06-02 08:00 CEST = 06:00Z.
    command = update(recurrence_config={"time": "8:00", "timezone": BERLIN})

    events = decide(given(DAILY), command)

    assert events == [
        updated(
            recurrence_config={"time": "08:00", "timezone": BERLIN},
            next_run_time=utc(2026, 6, 2, 6),
        )
    ]


@pytest.mark.parametrize(
    ("recurrence_type", "config", "canonical", "next_run"),
    [
        pytest.param(
            "weekly",
            {"time": "09:00", "days": [1], "timezone": BERLIN},
            {"time": "09:00", "days": [1], "timezone": BERLIN},
            utc(2026, 6, 8, 7),  # it is Monday 13:00 in Berlin: next Monday 09:00 CEST
            id="daily-to-weekly",
        ),
        pytest.param(
            "interval",
            {"every_seconds": 900},
            {"every_seconds": 900, "timezone": "UTC"},
            utc(2026, 6, 1, 11, 15),  # anchored at the update
            id="daily-to-interval",
        ),
        pytest.param(
            "once",
            {"run_at": "2026-07-01T00:00:00+00:00"},
            {"run_at": "2026-07-01T00:00:00+00:00", "timezone": "UTC"},
            utc(2026, 7, 1),
            id="daily-to-once",
        ),
    ],
)
def test_update_recurrence_type_with_a_fitting_config(
    recurrence_type: str, config: dict[str, Any], canonical: dict[str, Any], next_run: datetime
) -> None:
    command = update(recurrence_type=recurrence_type, recurrence_config=config)

    events = decide(given(DAILY), command)

    assert events == [
        updated(
            recurrence_type=recurrence_type, recurrence_config=canonical, next_run_time=next_run
        )
    ]


@pytest.mark.parametrize(
    ("recurrence_type", "field", "says"),
    [
        ("weekly", "recurrence_config.days", "is required for weekly recurrence"),
        ("custom", "recurrence_config.time", "unknown field for custom recurrence"),
    ],
)
def test_update_recurrence_type_alone_checks_the_old_config_against_it(
    recurrence_type: str, field: str, says: str
) -> None:
    then_invalid(given(DAILY), update(recurrence_type=recurrence_type), field, says)


def test_update_with_a_bad_recurrence_config_names_the_field() -> None:
    command = update(recurrence_config={"time": "25:00", "timezone": BERLIN})

    then_invalid(given(DAILY), command, "recurrence_config.time", "must be HH:MM or HH:MM:SS")


def test_update_a_paused_task_keeps_it_paused_without_next_run() -> None:
    command = update(recurrence_config={"time": "08:00", "timezone": BERLIN})

    events = decide(given(DAILY, PAUSED), command)

    assert events == [
        updated(recurrence_config={"time": "08:00", "timezone": BERLIN}, next_run_time=None)
    ]


def test_update_name_of_a_paused_task_keeps_next_run_none() -> None:
    events = decide(given(DAILY, PAUSED), update(name="renamed"))

    assert events == [updated(name="renamed", next_run_time=None)]


def test_paused_task_edited_then_resumed_runs_on_the_new_config() -> None:
    edit = updated(recurrence_config={"time": "08:00", "timezone": BERLIN}, next_run_time=None)
    state = given(DAILY, PAUSED, edit)
    assert state.paused
    assert state.next_run_time is None

    events = decide(state, ResumeTask(now=LATER))

    assert events == [
        TaskResumed(task_id=TASK_ID, resumed_at=LATER, next_run_time=utc(2026, 6, 2, 6))
    ]


def test_update_finished_once_task_with_a_future_run_at_rearms_it() -> None:
    now = utc(2026, 6, 3)
    command = update(now, recurrence_config={"run_at": "2026-06-05T12:00:00+00:00"})

    events = decide(given(ONCE, ONCE_FIRED), command)

    rearm = updated(
        updated_at=now,
        recurrence_config={"run_at": "2026-06-05T12:00:00+00:00", "timezone": "UTC"},
        next_run_time=utc(2026, 6, 5, 12),
        rearmed=True,
    )
    assert events == [rearm]
    state = given(ONCE, ONCE_FIRED, rearm)
    assert not state.finished
    assert state.next_run_time == utc(2026, 6, 5, 12)
    assert decide(state, PauseTask(now=now)) == [TaskPaused(task_id=TASK_ID, paused_at=now)]


def test_update_finished_once_task_with_a_past_run_at_is_invalid() -> None:
    command = update(utc(2026, 6, 3), recurrence_config={"run_at": "2026-06-02T12:00:00+00:00"})

    then_invalid(given(ONCE, ONCE_FIRED), command, "recurrence_config.run_at", "is in the past")


def test_update_name_of_a_finished_once_task_leaves_it_finished() -> None:
    now = utc(2026, 6, 3)

    events = decide(given(ONCE, ONCE_FIRED), update(now, name="done"))

    assert events == [updated(updated_at=now, name="done", next_run_time=None)]
    assert given(ONCE, ONCE_FIRED, *events).finished


def test_update_payload_is_revalidated_and_filled() -> None:
    command = update(task_payload={"command_payload": {"command": "df -h", "shell": "sh"}})

    events = decide(given(DAILY), command)

    filled = {
        "command_payload": {
            "command": "df -h",
            "shell": "sh",
            "timeout_seconds": 300,
            "env": {},
            "working_dir": None,
        }
    }
    assert events == [updated(task_payload=filled, next_run_time=utc(2026, 6, 1, 12))]


@pytest.mark.parametrize(
    ("payload", "field", "says"),
    [
        (
            {"file_payload": {"file_id": "f", "destination": "/x"}},
            "task_payload.file_payload",
            "not allowed for a command task",
        ),
        (
            {"command_payload": {"command": ""}},
            "task_payload.command_payload.command",
            "must not be empty",
        ),
    ],
    ids=["another-types-payload", "empty-command"],
)
def test_update_payload_is_checked_against_the_task_type(
    payload: dict[str, Any], field: str, says: str
) -> None:
    then_invalid(given(DAILY), update(task_payload=payload), field, says)


def test_update_a_missing_task_is_not_found() -> None:
    then_rejected(given(), update(name="x"), NotFound, f"task {TASK_ID} does not exist")


# --- PauseTask --------------------------------------------------------------------------------


def test_pause_a_pending_task() -> None:
    events = decide(given(DAILY), PauseTask(now=LATER))

    assert events == [PAUSED]
    assert given(DAILY, PAUSED) == TaskState(
        task_id=TASK_ID, version=2, spec=DAILY, paused=True, next_run_time=None
    )


def test_pause_twice_conflicts() -> None:
    then_rejected(given(DAILY, PAUSED), PauseTask(now=LATER), Conflict, "already paused")


def test_pause_a_finished_once_task_conflicts() -> None:
    state = given(ONCE, ONCE_FIRED)

    then_rejected(state, PauseTask(now=utc(2026, 6, 3)), Conflict, "has already run")


@pytest.mark.parametrize(
    "history",
    [(), (DAILY, DELETED), (DAILY, PAUSED, DELETED)],
    ids=["never-created", "deleted", "deleted-while-paused"],
)
def test_pause_a_missing_or_deleted_task_is_not_found(history: tuple[Event, ...]) -> None:
    then_rejected(given(*history), PauseTask(now=LATER), NotFound, "does not exist")


# --- ResumeTask -------------------------------------------------------------------------------


def test_resume_a_task_that_is_not_paused_conflicts() -> None:
    then_rejected(given(DAILY), ResumeTask(now=LATER), Conflict, "not paused")


def test_resume_sets_the_next_occurrence_after_now() -> None:
    # Resumed Wednesday 15:00 in Berlin: today's 14:00 has passed, so Thursday 14:00 CEST.
    now = utc(2026, 6, 3, 13)

    events = decide(given(DAILY, PAUSED), ResumeTask(now=now))

    resumed = TaskResumed(task_id=TASK_ID, resumed_at=now, next_run_time=utc(2026, 6, 4, 12))
    assert events == [resumed]
    assert given(DAILY, PAUSED, resumed) == TaskState(
        task_id=TASK_ID, version=3, spec=DAILY, next_run_time=utc(2026, 6, 4, 12)
    )


def test_resume_once_task_before_its_run_at() -> None:
    events = decide(given(ONCE, PAUSED), ResumeTask(now=utc(2026, 6, 2, 7)))

    assert events == [
        TaskResumed(
            task_id=TASK_ID, resumed_at=utc(2026, 6, 2, 7), next_run_time=utc(2026, 6, 2, 7, 30)
        )
    ]


def test_resume_once_task_whose_run_at_passed_while_paused_conflicts() -> None:
    state = given(ONCE, PAUSED)

    then_rejected(
        state, ResumeTask(now=utc(2026, 6, 2, 8)), Conflict, "run_at passed while it was paused"
    )


def test_resume_a_deleted_task_is_not_found() -> None:
    then_rejected(given(DAILY, PAUSED, DELETED), ResumeTask(now=LATER), NotFound, "does not exist")


# --- DeleteTask -------------------------------------------------------------------------------


def test_delete_a_task() -> None:
    events = decide(given(DAILY), DeleteTask(now=LATER))

    assert events == [DELETED]
    assert given(DAILY, DELETED) == TaskState(
        task_id=TASK_ID, version=2, spec=DAILY, deleted=True, next_run_time=None
    )


@pytest.mark.parametrize(
    "command",
    [
        update(name="x"),
        PauseTask(now=LATER),
        ResumeTask(now=LATER),
        DeleteTask(now=LATER),
        ExecuteNow(execution_id="exec-1", now=LATER),
    ],
    ids=["update", "pause", "resume", "delete", "execute"],
)
def test_after_delete_every_command_is_not_found(command: TaskCommand) -> None:
    then_rejected(given(DAILY, DELETED), command, NotFound, f"task {TASK_ID} does not exist")


# --- ExecuteNow -------------------------------------------------------------------------------


def manual(next_run_time: datetime | None, now: datetime = LATER) -> TaskDue:
    return TaskDue(
        task_id=TASK_ID,
        execution_id="exec-manual",
        scheduled_for=now,
        trigger="manual",
        due_at=now,
        next_run_time=next_run_time,
    )


def test_execute_now_fires_manually_without_moving_next_run() -> None:
    events = decide(given(DAILY), ExecuteNow(execution_id="exec-manual", now=LATER))

    assert events == [manual(utc(2026, 6, 1, 12))]
    assert given(DAILY, *events) == TaskState(
        task_id=TASK_ID, version=2, spec=DAILY, next_run_time=utc(2026, 6, 1, 12)
    )


def test_execute_now_is_allowed_while_paused_and_keeps_it_paused() -> None:
    events = decide(given(DAILY, PAUSED), ExecuteNow(execution_id="exec-manual", now=LATER))

    assert events == [manual(None)]
    assert given(DAILY, PAUSED, *events).paused


def test_execute_now_after_a_finished_once_task() -> None:
    now = utc(2026, 6, 3)

    events = decide(given(ONCE, ONCE_FIRED), ExecuteNow(execution_id="exec-manual", now=now))

    assert events == [manual(None, now)]
    assert given(ONCE, ONCE_FIRED, *events).finished


def test_execute_now_on_a_missing_task_is_not_found() -> None:
    command = ExecuteNow(execution_id="exec-manual", now=LATER)

    then_rejected(given(), command, NotFound, "does not exist")


# --- evolve: what the ticker records ----------------------------------------------------------


def test_scheduled_fire_of_a_once_task_finishes_it() -> None:
    assert given(ONCE, ONCE_FIRED) == TaskState(
        task_id=TASK_ID, version=2, spec=ONCE, finished=True, next_run_time=None, scheduled_runs=1
    )


def test_scheduled_fire_of_a_daily_task_moves_next_run() -> None:
    fired = TaskDue(
        task_id=TASK_ID,
        execution_id="exec-daily",
        scheduled_for=utc(2026, 6, 1, 12),
        trigger="schedule",
        due_at=utc(2026, 6, 1, 12),
        next_run_time=utc(2026, 6, 2, 12),
    )

    assert given(DAILY, fired) == TaskState(
        task_id=TASK_ID,
        version=2,
        spec=DAILY,
        next_run_time=utc(2026, 6, 2, 12),
        scheduled_runs=1,
    )


def test_run_missed_that_fails_a_once_task_finishes_it() -> None:
    missed = RunMissed(
        task_id=TASK_ID,
        scheduled_for=utc(2026, 6, 2, 7, 30),
        reason="past the misfire grace",
        recorded_at=utc(2026, 6, 2, 9),
        next_run_time=None,
        task_failed=True,
    )

    state = given(ONCE, missed)

    assert state == TaskState(
        task_id=TASK_ID, version=2, spec=ONCE, finished=True, next_run_time=None
    )
    then_rejected(state, PauseTask(now=utc(2026, 6, 2, 10)), Conflict, "has already run")


def test_run_missed_of_a_daily_task_moves_next_run_only() -> None:
    missed = RunMissed(
        task_id=TASK_ID,
        scheduled_for=utc(2026, 6, 1, 12),
        reason="scheduler was down",
        recorded_at=utc(2026, 6, 2, 13),
        next_run_time=utc(2026, 6, 3, 12),
    )

    assert given(DAILY, missed) == TaskState(
        task_id=TASK_ID, version=2, spec=DAILY, next_run_time=utc(2026, 6, 3, 12)
    )


def test_run_skipped_moves_next_run() -> None:
    skipped = RunSkipped(
        task_id=TASK_ID,
        scheduled_for=utc(2026, 6, 1, 12),
        reason="the previous run is still running",
        recorded_at=utc(2026, 6, 1, 12),
        next_run_time=utc(2026, 6, 2, 12),
    )

    assert given(DAILY, skipped) == TaskState(
        task_id=TASK_ID, version=2, spec=DAILY, next_run_time=utc(2026, 6, 2, 12)
    )


# --- from_msgspec_error -----------------------------------------------------------------------


class Leaf(msgspec.Struct, forbid_unknown_fields=True):
    n: int


class Inner(msgspec.Struct):
    items: list[Leaf]


class Outer(msgspec.Struct):
    inner: Inner


def decoding_error(body: bytes, shape: type[Any], prefix: str = "") -> ValidationFailed:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(body, type=shape)
    return from_msgspec_error(caught.value, prefix=prefix)


@pytest.mark.parametrize(
    ("body", "shape", "field", "reason"),
    [
        pytest.param(
            b'{"task_type": "command", "recurrence_type": "daily"}',
            TaskInput,
            "name",
            "is required",
            id="missing-top-level",
        ),
        pytest.param(
            b'{"inner": {"items": [{"n": 1}, {}]}}',
            Outer,
            "inner.items.1.n",
            "is required",
            id="missing-nested",
        ),
        pytest.param(b'{"nmae": "x"}', TaskPatch, "nmae", "is not a known field", id="unknown"),
        pytest.param(
            b'{"inner": {"items": [{"n": 1, "m": 2}]}}',
            Outer,
            "inner.items.0.m",
            "is not a known field",
            id="unknown-nested",
        ),
        pytest.param(
            b'{"group_ids": [1, "2"]}',
            TaskPatch,
            "group_ids.1",
            "must be a whole number, not text",
            id="wrong-type-in-list",
        ),
        pytest.param(
            b'{"inner": {"items": [{"n": "one"}]}}',
            Outer,
            "inner.items.0.n",
            "must be a whole number, not text",
            id="wrong-type-nested",
        ),
        pytest.param(
            b'{"jitter_seconds": -1}',
            TaskPatch,
            "jitter_seconds",
            "must be at least 0 seconds",
            id="constraint",
        ),
        pytest.param(b"[]", TaskPatch, "body", "must be an object, not a list", id="not-object"),
    ],
)
def test_from_msgspec_error_names_the_field(
    body: bytes, shape: type[Any], field: str, reason: str
) -> None:
    error = decoding_error(body, shape)

    assert (error.field, error.reason) == (field, reason)
    assert error.message == f"{field}: {reason}"


def test_from_msgspec_error_puts_the_prefix_first() -> None:
    error = decoding_error(b"{}", CommandPayload, prefix="task_payload.command_payload")

    assert error.field == "task_payload.command_payload.command"
    assert error.reason == "is required"


def test_from_msgspec_error_on_a_dict_value_names_the_dict() -> None:
    # msgspec does not say which key holds the bad value ("$.env[...]"), so `*` stands for it.
    body = b'{"command": "ls", "env": {"LANG": 1}}'

    error = decoding_error(body, CommandPayload, prefix="task_payload.command_payload")

    assert error.field == "task_payload.command_payload.env.*"
    assert error.reason == "must be text, not a number"


def test_from_msgspec_error_on_a_dict_key_names_the_dict() -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert({"env": {1: "x"}, "command": "ls"}, CommandPayload)

    error = from_msgspec_error(caught.value)

    assert error.field == "env"
    assert error.reason == "has a key that is wrong: must be text, not a number"
