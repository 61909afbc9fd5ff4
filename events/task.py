"""Events of the task aggregate: one stream per task, stream id = task id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from msgspec import UNSET, UnsetType

from events.base import Event


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
    updated_at: datetime
    next_run_time: datetime | None = None
    # A finished one-time task given a new future run_at is armed again.
    rearmed: bool = False


class TaskPaused(Event, frozen=True, kw_only=True, tag="TaskPaused"):
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


class RunSkipped(Event, frozen=True, kw_only=True, tag="RunSkipped"):
    task_id: str
    scheduled_for: datetime
    reason: str
    recorded_at: datetime
    next_run_time: datetime | None = None


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
