"""Events of one execution (one run of a task): one stream per execution, stream id = its id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from events.base import Event


class Delivery(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How a run reaches its devices (CONTRACT.md, "Fleet delivery"); the defaults are the
    behaviour before it existed: every device at once, offline ones unreachable at once."""

    offline_wait_seconds: int = 0
    max_concurrency: int | str | None = None  # an int >= 1, or "N%" of the targets
    max_errors: int | str | None = None  # an int >= 0, or "N%" of the targets
    waves: list[int | str] = []
    wave_pause_seconds: int = 0


class ExecutionRequested(Event, frozen=True, kw_only=True, tag="ExecutionRequested"):
    """A run asked for outside any schedule: ad hoc (no task) or a rerun of an earlier run.
    The first event of the execution's stream; it carries everything the executor needs."""

    execution_id: str
    task_id: str | None = None
    trigger: str  # "adhoc" | "rerun"
    name: str
    task_type: str
    task_payload: dict[str, Any]
    device_ids: list[str] = []
    group_ids: list[int] = []
    delivery: Delivery = Delivery()
    requested_at: datetime
    rerun_of: str | None = None


class ExecutionStarted(Event, frozen=True, kw_only=True, tag="ExecutionStarted"):
    execution_id: str
    task_id: str
    trigger: str
    scheduled_for: datetime
    started_at: datetime
    # The run's targets in order; when there are more than one event may carry, the first of
    # them, and ExecutionTargetsAdded events appended with this one carry the rest.
    device_ids: list[str]
    deadline: datetime | None = None
    delivery: Delivery = Delivery()
    # Seconds a device's job may run: its result is due this long (and a margin) after it
    # is dispatched. 0 in executions started before waves existed (one deadline for all).
    job_timeout_seconds: int = 0
    # How many targets the run has, device_ids and those of its ExecutionTargetsAdded together;
    # 0 in runs started before targets were split (device_ids are all of them).
    devices_targeted: int = 0


class ExecutionTargetsAdded(Event, frozen=True, kw_only=True, tag="ExecutionTargetsAdded"):
    """More of a run's targets, after ExecutionStarted's, in order: written in the same append
    as ExecutionStarted when the targets are too many for one event (services/infra/store.py
    bounds an event's size), so a reader of the stream sees all of them or none."""

    execution_id: str
    task_id: str
    device_ids: list[str]


class DeviceJobDispatched(Event, frozen=True, kw_only=True, tag="DeviceJobDispatched"):
    """The job went to these devices (a wave, or room under the concurrency limit)."""

    execution_id: str
    task_id: str
    device_ids: list[str]
    dispatched_at: datetime


class DevicesWaiting(Event, frozen=True, kw_only=True, tag="DevicesWaiting"):
    """These devices were offline when their turn came (or fell silent while running): each
    gets its job when it is heard again, until the run's offline wait runs out."""

    execution_id: str
    task_id: str
    device_ids: list[str]
    since: datetime


class ExecutionCancelRequested(Event, frozen=True, kw_only=True, tag="ExecutionCancelRequested"):
    """Who and why are in the event's metadata."""

    execution_id: str
    task_id: str
    requested_at: datetime
    reason: str = ""


class DeviceResultRecorded(Event, frozen=True, kw_only=True, tag="DeviceResultRecorded"):
    execution_id: str
    task_id: str
    device_id: str
    # "success" | "failed" | "timeout" | "unreachable" | "expired" | "skipped" | "canceled"
    status: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    recorded_at: datetime


class ExecutionCompleted(Event, frozen=True, kw_only=True, tag="ExecutionCompleted"):
    execution_id: str
    task_id: str
    status: str  # "success" | "failed" | "canceled"
    completed_at: datetime
    error_message: str | None = None
    devices_targeted: int = 0
    devices_succeeded: int = 0
    devices_failed: int = 0


EXECUTION_EVENTS = (
    ExecutionRequested,
    ExecutionStarted,
    ExecutionTargetsAdded,
    DeviceJobDispatched,
    DevicesWaiting,
    DeviceResultRecorded,
    ExecutionCancelRequested,
    ExecutionCompleted,
)
