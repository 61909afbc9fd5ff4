"""Runs asked for outside any schedule: an ad-hoc run on some devices, or a rerun of an earlier
run on some of its devices. Each decision returns the ExecutionRequested that starts it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from events.execution import ExecutionRequested
from services.domain.errors import Conflict, ValidationFailed
from services.domain.execution import ExecutionState
from services.domain.kinds import TaskType
from services.domain.task_spec import (
    MAX_GROUPS,
    MAX_TARGETS,
    DeliveryInput,
    DeviceId,
    GroupId,
    Name,
    canonical_delivery,
    canonical_payload,
    unique,
)


class RunInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of POST /api/executions."""

    name: Name
    task_type: TaskType
    task_payload: dict[str, Any] = {}
    device_ids: Annotated[list[DeviceId], Meta(max_length=MAX_TARGETS)] = []
    group_ids: Annotated[list[GroupId], Meta(max_length=MAX_GROUPS)] = []
    delivery: DeliveryInput = DeliveryInput()


class RerunInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of POST /api/executions/{id}/rerun."""

    devices: Literal["failed", "all"] | Annotated[list[DeviceId], Meta(max_length=MAX_TARGETS)]


class RunSource(msgspec.Struct, frozen=True, kw_only=True):
    """What an earlier run did, as a rerun repeats it."""

    task_id: str | None
    name: str
    task_type: str
    task_payload: dict[str, Any]


def request_adhoc(run: RunInput, execution_id: str, now: datetime) -> ExecutionRequested:
    if not run.device_ids and not run.group_ids:
        raise ValidationFailed("device_ids", "name at least one device or group to run on")
    return ExecutionRequested(
        execution_id=execution_id,
        trigger="adhoc",
        name=run.name,
        task_type=run.task_type,
        task_payload=canonical_payload(run.task_type, run.task_payload),
        device_ids=unique(run.device_ids),
        group_ids=unique(run.group_ids),
        delivery=canonical_delivery(run.delivery),
        requested_at=now,
    )


def request_rerun(
    earlier: ExecutionState,
    source: RunSource,
    choice: RerunInput,
    execution_id: str,
    now: datetime,
) -> ExecutionRequested:
    """A new run of what `earlier` ran, on the devices chosen among its targets."""
    if earlier.completed is None:
        raise Conflict(f"execution {earlier.execution_id} is still running: rerun it once done")
    targets = earlier.targets
    if choice.devices == "all":
        devices = list(targets)
    elif choice.devices == "failed":
        devices = [d for d in targets if earlier.devices[d].status != "success"]
    else:
        strangers = [d for d in choice.devices if d not in earlier.devices]
        if strangers:
            raise ValidationFailed("devices", f"not a target of that run: {strangers[0]}")
        devices = unique(choice.devices)
    if not devices:
        raise ValidationFailed("devices", "no device of that run matches: nothing to run again")
    return ExecutionRequested(
        execution_id=execution_id,
        task_id=source.task_id,
        trigger="rerun",
        name=source.name,
        task_type=source.task_type,
        task_payload=source.task_payload,
        device_ids=devices,
        delivery=earlier.delivery,
        requested_at=now,
        rerun_of=earlier.execution_id,
    )
