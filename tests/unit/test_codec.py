"""The event codec: every type round-trips, and an old shape is upcast on read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

import events.device
import events.execution
import events.task
from events.base import Event
from events.codec import EVENT_TYPES, UPCASTERS, UnknownEventType, decode_data, encode_data
from events.task import TaskPaused, TaskUpdated

CONTRACT_EVENT_TYPES = {
    "TaskCreated",
    "TaskUpdated",
    "TaskPaused",
    "TaskResumed",
    "TaskDeleted",
    "TaskDue",
    "ExecutionStarted",
    "DeviceResultRecorded",
    "ExecutionCompleted",
    "RunMissed",
    "RunSkipped",
}


def test_every_event_type_of_the_contract_exists() -> None:
    missing = CONTRACT_EVENT_TYPES - set(EVENT_TYPES)
    assert not missing


def test_an_event_round_trips_with_its_tag() -> None:
    event = TaskUpdated(
        task_id="t1", name="renamed", updated_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    )
    data = encode_data(event)
    assert b'"type":"TaskUpdated"' in data
    assert b"description" not in data, "unset fields are not written"
    assert decode_data("TaskUpdated", data) == event


def sample(info: msgspec.inspect.Type, salt: int) -> Any:
    """A value of that type, within its constraints, other than any field's default."""
    match info:
        case msgspec.inspect.StrType():
            return f"s{salt}".ljust(info.min_length or 0, "x")
        case msgspec.inspect.IntType():
            return max(salt, info.ge or 0, (info.gt or 0) + 1)
        case msgspec.inspect.FloatType():
            return salt + 0.5
        case msgspec.inspect.BoolType():
            return True
        case msgspec.inspect.DateTimeType():
            return datetime(2026, 3, 29, 1, salt % 60, 30, 123456, tzinfo=UTC)
        case msgspec.inspect.ListType():
            return [sample(info.item_type, salt + 1)]
        case msgspec.inspect.DictType():
            return {sample(info.key_type, salt + 1): sample(info.value_type, salt + 2)}
        case msgspec.inspect.UnionType():
            return sample(next(t for t in info.types if not isinstance(t, NONE)), salt)
        case msgspec.inspect.StructType():
            return info.cls(**{f.name: sample(f.type, salt + n) for n, f in enumerate(info.fields)})
        case msgspec.inspect.AnyType():
            return {"any": [salt, "value"]}
    raise AssertionError(f"no sample for {info!r}: teach sample() this type")


NONE = msgspec.inspect.NoneType


def every_field_set(cls: type[Event]) -> Event:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    event = sample(info, 1)
    assert isinstance(event, cls)
    return event


def test_every_event_struct_is_a_type_the_codec_reads() -> None:
    """An event class left out of its module's list would be written and never read back."""
    modules = [events.task, events.execution, events.device]
    defined = {
        cls.__struct_config__.tag
        for module in modules
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, Event) and cls.__module__ == module.__name__
    }
    assert defined == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_event_type_round_trips_with_every_field(event_type: str) -> None:
    event = every_field_set(EVENT_TYPES[event_type])
    data = encode_data(event)

    assert msgspec.json.decode(data)["type"] == event_type
    assert decode_data(event_type, data) == event
    # Every field set to a value of its own is written (none lost to a default).
    written = set(msgspec.json.decode(data))
    assert written == {f.encode_name for f in msgspec.structs.fields(event)} | {"type"}


def test_an_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(UnknownEventType, match="TaskTeleported"):
        decode_data("TaskTeleported", b"{}")


@pytest.fixture
def paused_v0_upcaster() -> Iterator[None]:
    def v0_to_v1(shape: dict[str, Any]) -> dict[str, Any]:
        return {"task_id": shape["task"], "paused_at": shape["at"]}

    UPCASTERS[("TaskPaused", 0)] = v0_to_v1
    yield
    del UPCASTERS[("TaskPaused", 0)]


@pytest.mark.usefixtures("paused_v0_upcaster")
def test_an_older_shape_is_upcast_on_read() -> None:
    stored_long_ago = b'{"task": "t1", "at": "2025-03-01T00:00:00Z"}'
    event = decode_data("TaskPaused", stored_long_ago, schema_version=0)
    assert event == TaskPaused(task_id="t1", paused_at=datetime(2025, 3, 1, tzinfo=UTC))
