"""The issue's user journey through the API: create, read, pause, resume, delete, history."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from tests.stack import Stack

DAILY_BERLIN = {
    "name": "nightly apt update",
    "task_type": "command",
    "recurrence_type": "daily",
    "recurrence_config": {"time": "02:30", "timezone": "Europe/Berlin"},
    "device_ids": ["local-1"],
    "task_payload": {"command_payload": {"command": "apt update"}},
}


async def test_daily_task_in_berlin_lifecycle(stack: Stack) -> None:
    admin = await stack.client("alice", "admin")

    status, task = await admin.post("/api/schedule/tasks", DAILY_BERLIN)
    assert status == 201, task
    next_run = datetime.fromisoformat(task["next_run_time"]).astimezone(ZoneInfo("Europe/Berlin"))
    assert (next_run.hour, next_run.minute) == (2, 30)
    assert task["status"] == "pending"

    status, paused = await admin.post(f"/api/schedule/tasks/{task['id']}/pause")
    assert (status, paused["status"], paused["next_run_time"]) == (200, "paused", None)
    status, resumed = await admin.post(f"/api/schedule/tasks/{task['id']}/resume")
    assert (status, resumed["status"]) == (200, "pending")
    assert resumed["next_run_time"] == task["next_run_time"]

    assert (await admin.delete(f"/api/schedule/tasks/{task['id']}"))[0] == 204
    assert (await admin.get(f"/api/schedule/tasks/{task['id']}"))[0] == 404

    status, history = await admin.get(f"/api/schedule/tasks/{task['id']}/events")
    assert status == 200
    assert [event["type"] for event in history["items"]] == [
        "TaskCreated",
        "TaskPaused",
        "TaskResumed",
        "TaskDeleted",
    ]
    assert {event["metadata"]["user"] for event in history["items"]} == {"alice"}
