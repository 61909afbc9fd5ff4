"""The event codec: every type round-trips, and an old shape is upcast on read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

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
