"""What a user may write on a task: the create and update shapes and their validation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from events.execution import Delivery
from services.agent.protocol import DEVICE_ID_PATTERN
from services.domain.delivery import checked
from services.domain.errors import ValidationFailed
from services.domain.field_reasons import choices_at, human_reason
from services.domain.kinds import TaskType, kind_of
from services.domain.recurrence import RecurrenceType

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Description = Annotated[str, Meta(max_length=5000)]
DeviceId = Annotated[str, Meta(min_length=1, max_length=128, pattern=DEVICE_ID_PATTERN)]
MAX_GROUP_ID = 2**31 - 1  # device_groups.id is a PostgreSQL integer
GroupId = Annotated[int, Meta(ge=1, le=MAX_GROUP_ID)]
Seconds = Annotated[int, Meta(ge=0, le=366 * 86400)]
OverlapPolicy = Literal["skip", "allow"]
MAX_RUNS = 2**31 - 1  # tasks.max_runs is a PostgreSQL integer
RunCount = Annotated[int, Meta(ge=1, le=MAX_RUNS)]

MAX_TARGETS = 10_000  # device ids of one task or group
MAX_GROUPS = 1_000  # group ids of one task


class DeliveryInput(
    Delivery, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True
):
    """`delivery` as a user writes it: the fields of the run's Delivery policy, and no others
    (services/domain/delivery.py checks their ranges)."""


class TaskInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of POST /api/schedule/tasks."""

    name: Name
    description: Description = ""
    task_type: TaskType
    recurrence_type: RecurrenceType
    recurrence_config: dict[str, Any] = {}
    device_ids: Annotated[list[DeviceId], Meta(max_length=MAX_TARGETS)] = []
    group_ids: Annotated[list[GroupId], Meta(max_length=MAX_GROUPS)] = []
    task_payload: dict[str, Any] = {}
    misfire_grace_seconds: Seconds = 3600
    overlap_policy: OverlapPolicy = "skip"
    jitter_seconds: Seconds = 0
    delivery: DeliveryInput = DeliveryInput()
    end_at: datetime | None = None
    max_runs: RunCount | None = None
    pause_on_failure: bool = False


class TaskPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of PUT /api/schedule/tasks/{id}: any subset of the writable fields."""

    name: Name | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    recurrence_type: RecurrenceType | UnsetType = UNSET
    recurrence_config: dict[str, Any] | UnsetType = UNSET
    device_ids: Annotated[list[DeviceId], Meta(max_length=MAX_TARGETS)] | UnsetType = UNSET
    group_ids: Annotated[list[GroupId], Meta(max_length=MAX_GROUPS)] | UnsetType = UNSET
    task_payload: dict[str, Any] | UnsetType = UNSET
    misfire_grace_seconds: Seconds | UnsetType = UNSET
    overlap_policy: OverlapPolicy | UnsetType = UNSET
    jitter_seconds: Seconds | UnsetType = UNSET
    # A new delivery replaces the whole policy (fields left out take their defaults).
    delivery: DeliveryInput | UnsetType = UNSET
    end_at: datetime | UnsetType | None = UNSET  # null removes the end
    max_runs: RunCount | UnsetType | None = UNSET  # null removes the limit
    pause_on_failure: bool | UnsetType = UNSET


WRITABLE_FIELDS: tuple[str, ...] = TaskPatch.__struct_fields__


def canonical_payload(task_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Validates task_payload for its task type and returns it with defaults filled."""
    kind = kind_of(task_type)
    key = kind.payload_key
    extra = sorted(set(payload) - {key})
    if extra:
        raise ValidationFailed(f"task_payload.{extra[0]}", f"not allowed for a {task_type} task")
    if key not in payload:
        raise ValidationFailed(f"task_payload.{key}", f"is required for a {task_type} task")
    try:
        parsed = kind.parse(payload[key])
    except msgspec.ValidationError as exc:
        raise from_msgspec_error(exc, f"task_payload.{key}", kind.payload_type) from None
    kind.check(f"task_payload.{key}", parsed)
    canonical: dict[str, Any] = msgspec.to_builtins(parsed)
    return {key: canonical}


def canonical_delivery(delivery: Delivery) -> Delivery:
    """The policy as the log stores it, once its ranges are checked (422 naming the field)."""
    return checked(Delivery(**msgspec.structs.asdict(delivery)))


def unique(values: list[Any]) -> list[Any]:
    """Removes repeats, keeping the first of each: a device listed twice runs once."""
    return list(dict.fromkeys(values))


def from_msgspec_error(
    exc: msgspec.ValidationError, prefix: str = "", shape: object = None
) -> ValidationFailed:
    """Turns msgspec's "Expected `int` >= 1 - at `$.a.b`" into field `a.b` and a reason in
    words ("must be at least 1"); `shape`, the type decoded, lets a bad choice list the good
    ones."""
    text = str(exc)
    reason, _, where = text.partition(" - at `")
    # A bad dict key reads "- at `key` in `$.env`"; a bad dict value "- at `$.env[...]`", with
    # no key named, so `*` stands for it.
    bad_key = where.startswith("key` in `")
    path = where.removeprefix("key` in `").rstrip("`").removeprefix("$").lstrip(".")
    path = path.replace("[...]", ".*").replace("[", ".").replace("]", "")
    if reason.startswith("Object missing required field `"):
        missing = reason.split("`")[1]
        path = f"{path}.{missing}" if path else missing
        reason = "is required"
    elif reason.startswith("Object contains unknown field `"):
        unknown = reason.split("`")[1]
        path = f"{path}.{unknown}" if path else unknown
        reason = "is not a known field"
    else:
        choices = choices_at(shape, path.split(".") if path else []) if shape else ()
        reason = human_reason(reason, path, choices)
    if bad_key:
        reason = f"has a key that is wrong: {reason}"
    field = ".".join(part for part in (prefix, path) if part) or "body"
    return ValidationFailed(field, reason)
