"""A task's history says what each edit changed: old and new value per field, folded from the
events (TaskUpdated carries only the new values)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from events.execution import Delivery, ExecutionStarted
from events.task import TaskCreated, TaskPaused, TaskUpdated
from services.domain.task_changes import Change, task_changes

NOW = datetime(2026, 6, 1, 10, tzinfo=UTC)
TASK_ID = "8a0f4b9e-3c52-4c0e-9d53-1b6f0f6d2c11"


def created(**fields: Any) -> TaskCreated:
    defaults: dict[str, Any] = {
        "task_id": TASK_ID,
        "user_id": "alice",
        "name": "nightly",
        "task_type": "command",
        "recurrence_type": "daily",
        "recurrence_config": {"time": "02:00", "timezone": "UTC"},
        "device_ids": ["web-1"],
        "task_payload": {"command_payload": {"command": "uptime"}},
        "created_at": NOW,
    }
    return TaskCreated(**(defaults | fields))


def updated(**fields: Any) -> TaskUpdated:
    return TaskUpdated(task_id=TASK_ID, updated_at=NOW, **fields)


def test_an_edit_lists_each_changed_field_with_its_old_and_new_value() -> None:
    history = [
        created(),
        updated(
            recurrence_type="weekly",
            recurrence_config={"time": "03:00", "days": [1], "timezone": "UTC"},
            description="now weekly",
        ),
    ]

    assert task_changes(history) == [
        None,
        [
            Change(field="description", old="", new="now weekly"),
            Change(field="recurrence_type", old="daily", new="weekly"),
            Change(
                field="recurrence_config",
                old={"time": "02:00", "timezone": "UTC"},
                new={"time": "03:00", "days": [1], "timezone": "UTC"},
            ),
        ],
    ]


def test_old_values_come_from_the_latest_edit_not_the_creation() -> None:
    history = [
        created(),
        updated(name="nightly v2"),
        TaskPaused(task_id=TASK_ID, paused_at=NOW),
        updated(name="nightly v3", device_ids=["web-1", "web-2"]),
    ]

    assert task_changes(history)[1:] == [
        [Change(field="name", old="nightly", new="nightly v2")],
        None,
        [
            Change(field="name", old="nightly v2", new="nightly v3"),
            Change(field="device_ids", old=["web-1"], new=["web-1", "web-2"]),
        ],
    ]


def test_a_field_restated_with_its_value_is_no_change() -> None:
    history = [created(), updated(recurrence_type="daily", name="renamed")]

    assert task_changes(history)[1] == [Change(field="name", old="nightly", new="renamed")]


def test_times_policies_and_removed_limits_read_as_json_values() -> None:
    end = datetime(2027, 1, 1, tzinfo=UTC)
    history = [
        created(max_runs=5),
        updated(end_at=end, max_runs=None, delivery=Delivery(max_concurrency=2)),
    ]

    changes = task_changes(history)[1]

    assert changes == [
        Change(field="delivery", old={}, new={"max_concurrency": 2}),
        Change(field="end_at", old=None, new="2027-01-01T00:00:00Z"),
        Change(field="max_runs", old=5, new=None),
    ]
    assert msgspec.json.decode(msgspec.json.encode(changes))[2] == {
        "field": "max_runs",
        "old": 5,
        "new": None,
    }


def test_events_of_runs_are_not_edits() -> None:
    started = ExecutionStarted(
        execution_id="e1",
        task_id=TASK_ID,
        trigger="manual",
        scheduled_for=NOW,
        started_at=NOW,
        device_ids=["web-1"],
    )

    assert task_changes([created(), started]) == [None, None]
