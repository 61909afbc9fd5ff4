"""Events of the task aggregate: one stream per task, stream id = task id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from msgspec import UNSET, UnsetType

from events.base import Event
from events.execution import Delivery


class TaskCreated(Event, frozen=True, kw_only=True, tag="TaskCreated"):
    task_id: str
    user_id: str
    name: str
    description: str = ""
    task_type: str
    recurrence_type: str
    recurrence_config: dict[str, Any]
    device_ids: list[str] = []
    group_ids: list[int] = []
    task_payload: dict[str, Any] = {}
    misfire_grace_seconds: int = 3600
    overlap_policy: str = "skip"
    jitter_seconds: int = 0
    created_at: datetime
    next_run_time: datetime | None = None
    # How each run reaches the devices (waves, limits, offline wait); the default is all at once.
    delivery: Delivery = Delivery()
    # No occurrence after end_at; no scheduled run after the max_runs-th (manual runs not counted).
    end_at: datetime | None = None
    max_runs: int | None = None
    # A failed scheduled run pauses the task.
    pause_on_failure: bool = False


class TaskUpdated(Event, frozen=True, kw_only=True, tag="TaskUpdated"):
    """Only the fields present changed; next_run_time is always restated."""

    task_id: str
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    recurrence_type: str | UnsetType = UNSET
    recurrence_config: dict[str, Any] | UnsetType = UNSET
    device_ids: list[str] | UnsetType = UNSET
    group_ids: list[int] | UnsetType = UNSET
    task_payload: dict[str, Any] | UnsetType = UNSET
    misfire_grace_seconds: int | UnsetType = UNSET
    overlap_policy: str | UnsetType = UNSET
    jitter_seconds: int | UnsetType = UNSET
    delivery: Delivery | UnsetType = UNSET
    end_at: datetime | UnsetType | None = UNSET  # None: no end any more
    max_runs: int | UnsetType | None = UNSET  # None: no limit any more
    pause_on_failure: bool | UnsetType = UNSET
    updated_at: datetime
    next_run_time: datetime | None = None
    # A finished task (a one-time task that ran, or one ended by end_at or max_runs) that has
    # an occurrence again after this edit is armed again.
    rearmed: bool = False
    # Always restated, like next_run_time: "end_at" or "max_runs" while that limit has ended
    # the task (it is completed), else None.
    completed_by: str | None = None


class TaskPaused(Event, frozen=True, kw_only=True, tag="TaskPaused"):
    """By a user, or by the ticker after a failed scheduled run (pause_on_failure): then the
    event's metadata says why ({"reason": "run <id> failed: <error>"})."""

    task_id: str
    paused_at: datetime


class TaskResumed(Event, frozen=True, kw_only=True, tag="TaskResumed"):
    task_id: str
    resumed_at: datetime
    next_run_time: datetime | None = None


class TaskDeleted(Event, frozen=True, kw_only=True, tag="TaskDeleted"):
    task_id: str
    deleted_at: datetime


class TaskDue(Event, frozen=True, kw_only=True, tag="TaskDue"):
    """An occurrence fires. For trigger "schedule", next_run_time is the following occurrence."""

    task_id: str
    execution_id: str
    scheduled_for: datetime
    trigger: str  # "schedule" | "manual"
    due_at: datetime
    next_run_time: datetime | None = None
    # Seconds between scheduled_for and the fire, when it fired late after downtime.
    lateness_seconds: float = 0.0
    # "end_at" or "max_runs" when this run is the task's last because of that limit: the task
    # is completed once it ends (next_run_time is None).
    completed_by: str | None = None


class RunMissed(Event, frozen=True, kw_only=True, tag="RunMissed"):
    task_id: str
    scheduled_for: datetime
    reason: str
    recorded_at: datetime
    next_run_time: datetime | None = None
    # True when the task has nothing left to run (a one-time task beyond its grace).
    task_failed: bool = False
    # After a long outage, older occurrences are recorded together: scheduled_for is the first.
    missed_count: int = 1
    # "end_at" when no occurrence is left before the task's end_at: the task is completed.
    completed_by: str | None = None


class RunSkipped(Event, frozen=True, kw_only=True, tag="RunSkipped"):
    task_id: str
    scheduled_for: datetime
    reason: str
    recorded_at: datetime
    next_run_time: datetime | None = None
    # "end_at" when no occurrence is left before the task's end_at: the task is completed.
    completed_by: str | None = None


TASK_EVENTS = (
    TaskCreated,
    TaskUpdated,
    TaskPaused,
    TaskResumed,
    TaskDeleted,
    TaskDue,
    RunMissed,
    RunSkipped,
)
