"""What the API tests share: valid request bodies, the contract's shapes, and small assertions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.stack import Client, Stack

TASKS = "/api/schedule/tasks"
GROUPS = "/api/groups"
Response = tuple[int, Any]

# The Task of the contract: every field and the JSON types it may take.
TASK_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "user_id": (str,),
    "name": (str,),
    "description": (str,),
    "task_type": (str,),
    "status": (str,),
    "recurrence_type": (str,),
    "recurrence_config": (dict,),
    "next_run_time": (str, type(None)),
    "last_run_time": (str, type(None)),
    "last_execution_status": (str, type(None)),
    "execution_count": (int,),
    "device_ids": (list,),
    "group_ids": (list,),
    "task_payload": (dict,),
    "created_at": (str,),
    "updated_at": (str,),
}
EXECUTION_FIELDS = (
    "id",
    "task_id",
    "trigger",
    "scheduled_for",
    "started_at",
    "completed_at",
    "status",
    "error_message",
    "result",
)
EVENT_FIELDS = ("id", "type", "stream_id", "version", "position", "recorded_at", "data", "metadata")


def task_path(task_id: str, action: str = "") -> str:
    return f"{TASKS}/{task_id}/{action}" if action else f"{TASKS}/{task_id}"


def unknown_task_id() -> str:
    return str(uuid.uuid4())


def command_task(**changes: Any) -> dict[str, Any]:
    """A valid create body for a daily command task, with `changes` applied on top."""
    body: dict[str, Any] = {
        "name": "apt update",
        "description": "refresh the package lists",
        "task_type": "command",
        "recurrence_type": "daily",
        "recurrence_config": {"time": "03:00", "timezone": "UTC"},
        "device_ids": ["local-1", "local-2"],
        "task_payload": {"command_payload": {"command": "apt update", "shell": "bash"}},
    }
    return body | changes


def software_task(**changes: Any) -> dict[str, Any]:
    """A valid create body for a weekly software deployment."""
    body: dict[str, Any] = {
        "name": "install nginx",
        "task_type": "software_deployment",
        "recurrence_type": "weekly",
        "recurrence_config": {"time": "09:00", "days": [1, 3, 5]},
        "device_ids": ["local-1"],
        "task_payload": {
            "software_payload": {"package": "nginx", "version": "1.24", "action": "install"}
        },
    }
    return body | changes


def once_task(run_at: datetime, **changes: Any) -> dict[str, Any]:
    return command_task(
        recurrence_type="once", recurrence_config={"run_at": run_at.isoformat()}, **changes
    )


async def create_task(client: Client, body: dict[str, Any] | None = None) -> dict[str, Any]:
    status, task = await client.post(TASKS, command_task() if body is None else body)
    assert status == 201, task
    return task  # type: ignore[no-any-return]


async def fetch_task(client: Client, task_id: str) -> dict[str, Any]:
    status, task = await client.get(task_path(task_id))
    assert status == 200, task
    return task  # type: ignore[no-any-return]


async def list_tasks(client: Client, query: str = "") -> dict[str, Any]:
    status, page = await client.get(f"{TASKS}?{query}" if query else TASKS)
    assert status == 200, page
    assert set(page) == {"items", "total"}, page
    return page  # type: ignore[no-any-return]


async def event_types(client: Client, task_id: str) -> list[str]:
    status, history = await client.get(task_path(task_id, "events"))
    assert status == 200, history
    return [event["type"] for event in history["items"]]


async def fresh_user(stack: Stack, role: str) -> Client:
    """A client for a user no other test uses, for tests sharing one stack."""
    return await stack.client(f"{role}-{uuid.uuid4().hex[:8]}", role)


def ids(items: list[dict[str, Any]]) -> list[Any]:
    return [item["id"] for item in items]


def instant(text: str | None) -> datetime:
    """A time the API sent; the contract says ISO 8601 with an offset, so never naive."""
    assert text is not None
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() is not None, f"{text!r} has no offset"
    return parsed


def assert_error(response: Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The contract's error body {"error": {"code", "message", "details"}} with this status."""
    got, body = response
    assert got == status, f"expected {status}, got {got}: {body}"
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    if code is not None:
        assert error["code"] == code, error
    return error  # type: ignore[no-any-return]


def assert_invalid(response: Response, field: str, why: str = "") -> None:
    """A 422 whose message names `field` (and says `why`, when given)."""
    message = assert_error(response, 422)["message"]
    assert field in message, f"the message should name {field!r}: {message!r}"
    assert why.lower() in message.lower(), f"the message should say {why!r}: {message!r}"


def time_of_day_from_now(hours: int, zone: ZoneInfo) -> time:
    """A whole minute `hours` ahead in `zone`: far enough from now that no test run races it."""
    return (datetime.now(zone) + timedelta(hours=hours)).time().replace(second=0, microsecond=0)


def next_daily(at: time, zone: ZoneInfo, after: datetime) -> datetime:
    """The first daily `at` in `zone` after `after`, for a zone and day without a DST change."""
    local = after.astimezone(zone)
    candidate = datetime.combine(local.date(), at, tzinfo=zone)
    if candidate <= after:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone)
    return candidate.astimezone(UTC)


def hhmm(at: time) -> str:
    return at.strftime("%H:%M")
