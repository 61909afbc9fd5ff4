"""The task aggregate: decide(state, command) -> events and evolve(state, event) -> state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from msgspec import UNSET
from msgspec.structs import replace

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
from services.domain.errors import Conflict, NotFound, ValidationFailed
from services.domain.limits import END_AT, end_instant, limited
from services.domain.recurrence import parse_schedule
from services.domain.task_spec import (
    TaskInput,
    TaskPatch,
    canonical_delivery,
    canonical_payload,
    unique,
)

RECURRENCE_FIELDS = ("recurrence_type", "recurrence_config")
LIMIT_FIELDS = ("end_at", "max_runs")


class TaskState(msgspec.Struct, kw_only=True):
    """What decide needs to know about one task, folded from its stream."""

    task_id: str
    version: int = 0
    spec: TaskCreated | None = None
    deleted: bool = False
    paused: bool = False
    # A one-time task that fired (or missed for good), or a task its end_at or max_runs ended:
    # nothing is left to schedule.
    finished: bool = False
    next_run_time: datetime | None = None
    # Runs fired by the schedule (not "execute now"): what max_runs counts.
    scheduled_runs: int = 0
    # "end_at" or "max_runs" while that limit has ended the task.
    completed_by: str | None = None

    @property
    def live(self) -> bool:
        return self.spec is not None and not self.deleted


class CreateTask(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    task: TaskInput
    now: datetime


class UpdateTask(msgspec.Struct, frozen=True, kw_only=True):
    patch: TaskPatch
    now: datetime


class PauseTask(msgspec.Struct, frozen=True, kw_only=True):
    now: datetime


class ResumeTask(msgspec.Struct, frozen=True, kw_only=True):
    now: datetime


class DeleteTask(msgspec.Struct, frozen=True, kw_only=True):
    now: datetime


class ExecuteNow(msgspec.Struct, frozen=True, kw_only=True):
    execution_id: str
    now: datetime


TaskCommand = CreateTask | UpdateTask | PauseTask | ResumeTask | DeleteTask | ExecuteNow


def decide(state: TaskState, command: TaskCommand) -> list[Event]:
    if isinstance(command, CreateTask):
        return [_create(state, command)]
    spec = _require_live(state)
    match command:
        case UpdateTask():
            return [_update(state, spec, command)]
        case PauseTask(now=now):
            if state.paused:
                raise Conflict("the task is already paused")
            if state.completed_by is not None:
                raise Conflict(
                    f"the task has ended (its {state.completed_by}) and has nothing left to "
                    "pause; change its end_at or max_runs with PUT to schedule it again"
                )
            if state.finished:
                raise Conflict("the task has already run and has nothing left to pause")
            return [TaskPaused(task_id=state.task_id, paused_at=now)]
        case ResumeTask(now=now):
            if not state.paused:
                raise Conflict("the task is not paused, so it cannot be resumed")
            schedule = parse_schedule(spec.recurrence_type, spec.recurrence_config, anchor=now)
            next_run = schedule.next_after(now)
            if next_run is None:
                raise Conflict(
                    "the task's run_at passed while it was paused; "
                    "give it a new recurrence_config.run_at with PUT first"
                )
            next_run, ended_by = limited(
                next_run,
                end_at=spec.end_at,
                max_runs=spec.max_runs,
                scheduled_runs=state.scheduled_runs,
            )
            if next_run is None:
                raise Conflict(_ended_while_paused(spec, ended_by))
            return [TaskResumed(task_id=state.task_id, resumed_at=now, next_run_time=next_run)]
        case DeleteTask(now=now):
            return [TaskDeleted(task_id=state.task_id, deleted_at=now)]
        case ExecuteNow(execution_id=execution_id, now=now):
            return [
                TaskDue(
                    task_id=state.task_id,
                    execution_id=execution_id,
                    scheduled_for=now,
                    trigger="manual",
                    due_at=now,
                    next_run_time=state.next_run_time,
                )
            ]
    raise TypeError(f"not a task command: {command!r}")


def _ended_while_paused(spec: TaskCreated, ended_by: str | None) -> str:
    if ended_by == END_AT:
        assert spec.end_at is not None
        return (
            f"the task's end_at ({spec.end_at.isoformat()}) is before its next occurrence; "
            "give it a later end_at (or null) with PUT first"
        )
    return (
        f"the task has had its max_runs ({spec.max_runs}) scheduled runs; "
        "raise max_runs (or set it to null) with PUT first"
    )


def _require_live(state: TaskState) -> TaskCreated:
    if state.spec is None or state.deleted:
        raise NotFound(f"task {state.task_id} does not exist")
    return state.spec


def _create(state: TaskState, command: CreateTask) -> TaskCreated:
    if state.spec is not None:
        raise Conflict(f"task {state.task_id} already exists")
    task, now = command.task, command.now
    schedule = parse_schedule(task.recurrence_type, task.recurrence_config, anchor=now)
    next_run = schedule.next_after(now)
    if next_run is None:
        raise ValidationFailed(
            "recurrence_config.run_at", "is in the past; it must be in the future"
        )
    config = schedule.canonical_config()
    end_at = end_instant(task.end_at, config)
    if end_at is not None and next_run > end_at:
        raise ValidationFailed(
            "end_at",
            f"is before the task's first occurrence ({next_run.isoformat()}), "
            "so it would never run",
        )
    return TaskCreated(
        task_id=state.task_id,
        user_id=command.user_id,
        name=task.name,
        description=task.description,
        task_type=task.task_type,
        recurrence_type=task.recurrence_type,
        recurrence_config=config,
        device_ids=unique(task.device_ids),
        group_ids=unique(task.group_ids),
        task_payload=canonical_payload(task.task_type, task.task_payload),
        misfire_grace_seconds=task.misfire_grace_seconds,
        overlap_policy=task.overlap_policy,
        jitter_seconds=task.jitter_seconds,
        created_at=now,
        next_run_time=next_run,
        delivery=canonical_delivery(task.delivery),
        end_at=end_at,
        max_runs=task.max_runs,
        pause_on_failure=task.pause_on_failure,
    )


def _update(state: TaskState, spec: TaskCreated, command: UpdateTask) -> TaskUpdated:
    patch, now = command.patch, command.now
    changes: dict[str, Any] = {
        name: value
        for name in patch.__struct_fields__
        if (value := getattr(patch, name)) is not UNSET
    }
    if "device_ids" in changes:
        changes["device_ids"] = unique(changes["device_ids"])
    if "group_ids" in changes:
        changes["group_ids"] = unique(changes["group_ids"])
    if "task_payload" in changes:
        changes["task_payload"] = canonical_payload(spec.task_type, changes["task_payload"])
    if "delivery" in changes:
        changes["delivery"] = canonical_delivery(changes["delivery"])

    next_run, rearmed, completed_by = state.next_run_time, False, state.completed_by
    recurrence_changed = any(field in changes for field in RECURRENCE_FIELDS)
    if recurrence_changed or any(field in changes for field in LIMIT_FIELDS):
        recurrence_type = changes.get("recurrence_type", spec.recurrence_type)
        config = changes.get("recurrence_config", spec.recurrence_config)
        schedule = parse_schedule(recurrence_type, config, anchor=now)
        config = schedule.canonical_config()
        if recurrence_changed:
            changes["recurrence_config"] = config
            next_run = schedule.next_after(now)
            if next_run is None:
                raise ValidationFailed(
                    "recurrence_config.run_at", "is in the past; it must be in the future"
                )
        elif state.completed_by is not None:
            # Ended by a limit: the new limits may leave it occurrences again, from now on.
            next_run = schedule.next_after(now)
        if "end_at" in changes:
            changes["end_at"] = end_instant(changes["end_at"], config)
        next_run, completed_by = limited(
            next_run,
            end_at=changes.get("end_at", spec.end_at),
            max_runs=changes.get("max_runs", spec.max_runs),
            scheduled_runs=state.scheduled_runs,
        )
        rearmed = state.finished and next_run is not None
        if state.paused:
            # Resume looks at the schedule and the limits again.
            next_run, completed_by = None, None
    return TaskUpdated(
        task_id=state.task_id,
        updated_at=now,
        next_run_time=next_run,
        rearmed=rearmed,
        completed_by=completed_by,
        **changes,
    )


def evolve(state: TaskState, event: Event) -> TaskState:
    state = replace(state, version=state.version + 1)
    match event:
        case TaskCreated():
            return replace(state, spec=event, next_run_time=event.next_run_time)
        case TaskUpdated():
            assert state.spec is not None
            changed = {
                name: value
                for name in TaskPatch.__struct_fields__
                if (value := getattr(event, name)) is not UNSET
            }
            finished = (state.finished and not event.rearmed) or event.completed_by is not None
            spec = replace(state.spec, **changed)
            return replace(
                state,
                spec=spec,
                next_run_time=event.next_run_time,
                finished=finished,
                completed_by=event.completed_by,
            )
        case TaskPaused():
            return replace(state, paused=True, next_run_time=None)
        case TaskResumed():
            return replace(state, paused=False, next_run_time=event.next_run_time)
        case TaskDeleted():
            return replace(state, deleted=True, next_run_time=None)
        case TaskDue(trigger="schedule"):
            assert state.spec is not None
            once = state.spec.recurrence_type == "once"
            return replace(
                state,
                next_run_time=event.next_run_time,
                finished=once or event.completed_by is not None,
                scheduled_runs=state.scheduled_runs + 1,
                completed_by=event.completed_by,
            )
        case RunMissed():
            return replace(
                state,
                next_run_time=event.next_run_time,
                finished=state.finished or event.task_failed or event.completed_by is not None,
                completed_by=event.completed_by,
            )
        case RunSkipped():
            return replace(
                state,
                next_run_time=event.next_run_time,
                finished=state.finished or event.completed_by is not None,
                completed_by=event.completed_by,
            )
    return state


def fold(task_id: str, events: list[Event]) -> TaskState:
    state = TaskState(task_id=task_id)
    for event in events:
        state = evolve(state, event)
    return state
