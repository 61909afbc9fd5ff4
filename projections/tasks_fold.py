"""The tasks projection (projections/tasks.py) folded in memory: tasks and task_runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from msgspec import UNSET

from events.codec import RecordedEvent
from events.execution import ExecutionCompleted
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
from projections.batching import json_text
from projections.fold import Rows, type_names

_HANDLED = (
    TaskCreated,
    TaskUpdated,
    TaskPaused,
    TaskResumed,
    TaskDeleted,
    TaskDue,
    RunMissed,
    RunSkipped,
    ExecutionCompleted,
)
# TaskUpdated's columns as they are stored: the JSON ones as text.
_UPDATABLE = (
    "name",
    "description",
    "recurrence_type",
    "recurrence_config",
    "device_ids",
    "group_ids",
    "task_payload",
    "misfire_grace_seconds",
    "overlap_policy",
    "jitter_seconds",
    "delivery",
    "end_at",
    "max_runs",
    "pause_on_failure",
)
_JSON_COLUMNS = frozenset({"recurrence_config", "task_payload", "delivery"})


class TaskRow(msgspec.Struct, kw_only=True):
    id: str
    version: int
    user_id: str
    name: str
    description: str
    task_type: str
    status: str
    recurrence_type: str
    recurrence_config: str
    next_run_time: datetime | None
    last_run_time: datetime | None = None
    last_execution_status: str | None = None
    execution_count: int = 0
    running_executions: int = 0
    device_ids: list[str]
    group_ids: list[int]
    task_payload: str
    misfire_grace_seconds: int
    overlap_policy: str
    jitter_seconds: int
    created_at: datetime
    updated_at: datetime
    delivery: str
    end_at: datetime | None
    max_runs: int | None
    scheduled_runs: int = 0
    completed_by: str | None = None
    pause_on_failure: bool
    failed_run: str | None = None
    failed_run_error: str | None = None

    def lapse_pause_owed(self, when: bool) -> None:
        # A pause owed for a failed run lapses once the task has nothing left to schedule.
        if when:
            self.failed_run = None
            self.failed_run_error = None

    def resting_status(self) -> str:
        """The status a task settles in when nothing of it is running."""
        if self.status == "paused":
            return "paused"
        if self.running_executions > 0:
            return "running"
        if self.completed_by is not None:
            return "completed"
        if self.next_run_time is not None or self.recurrence_type != "once":
            return "pending"
        if self.last_execution_status == "failed":
            return "failed"
        if self.last_execution_status == "success":
            return "completed"
        return self.status


class RunRow(msgspec.Struct):
    task_id: str
    scheduled: bool
    status: str = "running"


class TasksFold:
    handled = type_names(_HANDLED)

    def __init__(self) -> None:
        self.tasks: dict[str, TaskRow] = {}
        self.runs: dict[str, RunRow] = {}

    def _step(self, task_id: str, version: int) -> TaskRow | None:
        """The task an event of its own stream moves, once: None when it is gone or the
        version guard says the event was applied already."""
        task = self.tasks.get(task_id)
        if task is None or task.version >= version:
            return None
        task.version = version
        return task

    def evolve(self, recorded: RecordedEvent) -> None:
        event, version = recorded.event, recorded.version
        match event:
            case TaskCreated():
                if event.task_id not in self.tasks:
                    self.tasks[event.task_id] = _created(event, version)
            case TaskUpdated():
                if task := self._step(event.task_id, version):
                    _update(task, event)
            case TaskPaused():
                if task := self._step(event.task_id, version):
                    task.status = "paused"
                    task.next_run_time = None
                    task.lapse_pause_owed(True)
            case TaskResumed():
                if task := self._step(event.task_id, version):
                    task.next_run_time = event.next_run_time
                    task.status = "running" if task.running_executions > 0 else "pending"
            case TaskDeleted():
                self.tasks.pop(event.task_id, None)
            case TaskDue():
                scheduled = event.trigger == "schedule"
                self.runs.setdefault(event.execution_id, RunRow(event.task_id, scheduled))
                if task := self._step(event.task_id, version):
                    if scheduled:
                        task.next_run_time = event.next_run_time
                        task.scheduled_runs += 1
                        task.completed_by = event.completed_by
                    task.lapse_pause_owed(scheduled and event.next_run_time is None)
                    task.running_executions += 1
                    task.status = "paused" if task.status == "paused" else "running"
                    task.last_run_time = event.due_at
            case RunMissed() | RunSkipped():
                if task := self._step(event.task_id, version):
                    if isinstance(event, RunMissed) and event.task_failed:
                        task.status = "failed"
                    elif event.completed_by is not None and task.running_executions <= 0:
                        task.status = "completed"
                    task.next_run_time = event.next_run_time
                    task.completed_by = event.completed_by
                    task.lapse_pause_owed(event.next_run_time is None)
            case ExecutionCompleted():
                self._completed(event)

    def _completed(self, event: ExecutionCompleted) -> None:
        # task_runs says whether this execution was counted already.
        run = self.runs.get(event.execution_id)
        if run is None or run.status != "running":
            return
        run.status = event.status
        task = self.tasks.get(run.task_id)
        if task is None:
            return
        if (
            run.scheduled
            and event.status == "failed"
            and task.pause_on_failure
            and task.status != "paused"
            and task.next_run_time is not None
        ):
            task.failed_run = event.execution_id
            task.failed_run_error = event.error_message
        task.running_executions = max(task.running_executions - 1, 0)
        task.execution_count += 1
        task.last_execution_status = event.status
        task.status = task.resting_status()

    def rows(self) -> list[Rows]:
        task_columns = TaskRow.__struct_fields__
        return [
            Rows("tasks", task_columns, (msgspec.structs.astuple(t) for t in self.tasks.values())),
            Rows(
                "task_runs",
                ("execution_id", "task_id", "scheduled", "status"),
                ((key, r.task_id, r.scheduled, r.status) for key, r in self.runs.items()),
            ),
        ]


def _created(event: TaskCreated, version: int) -> TaskRow:
    return TaskRow(
        id=event.task_id,
        version=version,
        user_id=event.user_id,
        name=event.name,
        description=event.description,
        task_type=event.task_type,
        status="pending",
        recurrence_type=event.recurrence_type,
        recurrence_config=json_text(event.recurrence_config),
        next_run_time=event.next_run_time,
        device_ids=event.device_ids,
        group_ids=event.group_ids,
        task_payload=json_text(event.task_payload),
        misfire_grace_seconds=event.misfire_grace_seconds,
        overlap_policy=event.overlap_policy,
        jitter_seconds=event.jitter_seconds,
        created_at=event.created_at,
        updated_at=event.created_at,
        delivery=json_text(event.delivery),
        end_at=event.end_at,
        max_runs=event.max_runs,
        pause_on_failure=event.pause_on_failure,
    )


def _update(task: TaskRow, event: TaskUpdated) -> None:
    # Every condition reads the row as it was before the event, as one UPDATE does.
    old_status, running = task.status, task.running_executions
    task.updated_at = event.updated_at
    task.next_run_time = event.next_run_time
    for column in _UPDATABLE:
        value: Any = getattr(event, column)
        if value is UNSET:
            continue
        setattr(task, column, json_text(value) if column in _JSON_COLUMNS else value)
    task.completed_by = event.completed_by
    if event.rearmed:
        task.status = "running" if running > 0 else "pending"
    elif event.completed_by is not None and not (old_status == "paused" or running > 0):
        task.status = "completed"
    # A new pause_on_failure (either way) starts afresh; an ended task owes no pause.
    task.lapse_pause_owed(event.pause_on_failure is not UNSET or event.next_run_time is None)
