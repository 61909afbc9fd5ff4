"""The executions projection (projections/executions.py) folded in memory: executions, their
per-device results and the hourly counts."""

from __future__ import annotations

from datetime import datetime, tzinfo

import msgspec

from events.codec import RecordedEvent
from events.execution import (
    DeviceJobDispatched,
    DeviceResultRecorded,
    DevicesWaiting,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionRequested,
    ExecutionStarted,
    ExecutionTargetsAdded,
)
from events.task import TaskDue
from projections.batching import json_text
from projections.fold import Rows, hour_of, type_names

_HANDLED = (
    TaskDue,
    ExecutionRequested,
    ExecutionStarted,
    ExecutionTargetsAdded,
    DeviceJobDispatched,
    DevicesWaiting,
    ExecutionCancelRequested,
    DeviceResultRecorded,
    ExecutionCompleted,
)
# A device's row moves pending -> waiting/running -> a final status, never back from final.
_NOT_FINAL = frozenset({"pending", "waiting", "running"})
_NO_DELIVERY = "{}"


class ExecutionRow(msgspec.Struct, kw_only=True):
    id: str
    task_id: str | None
    task_type: str
    trigger: str
    scheduled_for: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    deadline: datetime | None = None
    status: str = "running"
    error_message: str | None = None
    devices_targeted: int = 0
    devices_succeeded: int = 0
    devices_failed: int = 0
    delivery: str = _NO_DELIVERY
    cancel_requested_at: datetime | None = None
    name: str = ""
    requested_by: str | None = None
    rerun_of: str | None = None


class ResultRow(msgspec.Struct, array_like=True):
    """(execution_id, device_id) is its key; these are the other columns."""

    status: str
    recorded_at: datetime
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None


class ExecutionsFold:
    handled = type_names(_HANDLED)

    def __init__(self, zone: tzinfo) -> None:
        # The session's time zone, in which date_trunc('hour', ...) cuts the hourly counts.
        self.zone = zone
        self.executions: dict[str, ExecutionRow] = {}
        self.results: dict[tuple[str, str], ResultRow] = {}
        # (task_id, hour) -> [succeeded, failed]
        self.hourly: dict[tuple[str, datetime], list[int]] = {}

    def evolve(self, recorded: RecordedEvent) -> None:
        event = recorded.event
        match event:
            case DeviceResultRecorded():
                key = (event.execution_id, event.device_id)
                row = self.results.get(key)
                if row is None:
                    self.results[key] = ResultRow(
                        event.status,
                        event.recorded_at,
                        event.exit_code,
                        event.stdout,
                        event.stderr,
                        event.error,
                    )
                elif row.status in _NOT_FINAL:
                    row.status = event.status
                    row.exit_code = event.exit_code
                    row.stdout = event.stdout
                    row.stderr = event.stderr
                    row.error = event.error
                    row.recorded_at = event.recorded_at
            case TaskDue():
                # The run exists from the moment it is due.
                if event.execution_id not in self.executions:
                    self.executions[event.execution_id] = ExecutionRow(
                        id=event.execution_id,
                        task_id=event.task_id,
                        task_type=recorded.category,
                        trigger=event.trigger,
                        scheduled_for=event.scheduled_for,
                    )
            case ExecutionRequested():
                if event.execution_id not in self.executions:
                    self.executions[event.execution_id] = ExecutionRow(
                        id=event.execution_id,
                        task_id=event.task_id,
                        task_type=event.task_type,
                        trigger=event.trigger,
                        scheduled_for=event.requested_at,
                        name=event.name,
                        requested_by=str(recorded.metadata.get("user", "")),
                        rerun_of=event.rerun_of,
                        delivery=json_text(event.delivery),
                    )
            case ExecutionStarted():
                run = self.executions.get(event.execution_id)
                if run is not None:
                    run.started_at = event.started_at
                    run.deadline = event.deadline
                    run.devices_targeted = max(event.devices_targeted, len(event.device_ids))
                    run.delivery = json_text(event.delivery)
                # One row per target from the start: the run shows who is still pending.
                for device in event.device_ids:
                    self.results.setdefault(
                        (event.execution_id, device), ResultRow("pending", event.started_at)
                    )
            case ExecutionTargetsAdded():
                for device in event.device_ids:
                    self.results.setdefault(
                        (event.execution_id, device), ResultRow("pending", recorded.recorded_at)
                    )
            case DeviceJobDispatched():
                self._progress(event.execution_id, event.device_ids, "running", event.dispatched_at)
            case DevicesWaiting():
                self._progress(event.execution_id, event.device_ids, "waiting", event.since)
            case ExecutionCancelRequested():
                if run := self.executions.get(event.execution_id):
                    run.cancel_requested_at = event.requested_at
            case ExecutionCompleted():
                self._completed(event)

    def _progress(self, execution_id: str, devices: list[str], status: str, at: datetime) -> None:
        for device in devices:
            row = self.results.get((execution_id, device))
            if row is None:
                self.results[(execution_id, device)] = ResultRow(status, at)
            elif row.status in _NOT_FINAL:
                row.status = status
                row.recorded_at = at

    def _completed(self, event: ExecutionCompleted) -> None:
        run = self.executions.get(event.execution_id)
        if run is None or run.status != "running":
            return
        run.status = event.status
        run.completed_at = event.completed_at
        run.error_message = event.error_message
        run.devices_targeted = event.devices_targeted
        run.devices_succeeded = event.devices_succeeded
        run.devices_failed = event.devices_failed
        if not run.task_id:
            return  # an ad-hoc run: no task to count it for
        counts = self.hourly.setdefault(
            (run.task_id, hour_of(event.completed_at, self.zone)), [0, 0]
        )
        counts[0 if event.status == "success" else 1] += 1

    def rows(self) -> list[Rows]:
        return [
            Rows(
                "executions",
                ExecutionRow.__struct_fields__,
                (msgspec.structs.astuple(run) for run in self.executions.values()),
            ),
            Rows(
                "execution_results",
                ("execution_id", "device_id", *ResultRow.__struct_fields__),
                ((*key, *msgspec.structs.astuple(row)) for key, row in self.results.items()),
            ),
            Rows(
                "execution_stats_hourly",
                ("task_id", "hour", "succeeded", "failed"),
                ((*key, *counts) for key, counts in self.hourly.items()),
            ),
        ]
