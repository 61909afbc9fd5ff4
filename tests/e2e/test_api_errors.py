"""Refused requests: 400, 404, 409, 413 and 422 in the contract's error shape, and a refused
write leaves the stored task as it was."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.api import (
    TASKS,
    Response,
    assert_error,
    assert_invalid,
    command_task,
    create_task,
    event_types,
    fetch_task,
    list_tasks,
    software_task,
    task_path,
    unknown_task_id,
)
from tests.stack import Client

ONE_MIB = 1024 * 1024
YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).isoformat()
TASK_ROUTES = [
    ("GET", ""),
    ("PUT", ""),
    ("DELETE", ""),
    ("POST", "pause"),
    ("POST", "resume"),
    ("POST", "execute"),
    ("GET", "executions"),
    ("GET", "events"),
]


def json_headers() -> dict[str, str]:
    return {"Content-Type": "application/json"}


# --- 400 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{not json", b'{"name": "x",', b"", b"   "])
async def test_a_create_whose_body_is_not_json_is_400(operator: Client, body: bytes) -> None:
    response = await operator.call("POST", TASKS, data=body, headers=json_headers())

    assert_error(response, 400)
    assert (await list_tasks(operator))["total"] == 0


async def test_an_update_whose_body_is_not_json_is_400_and_changes_nothing(
    operator: Client,
) -> None:
    task = await create_task(operator)

    response = await operator.call(
        "PUT", task_path(task["id"]), data=b"{'name': 'single quotes'}", headers=json_headers()
    )

    assert_error(response, 400)
    assert await fetch_task(operator, task["id"]) == task


# --- 404 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "action"), TASK_ROUTES, ids=[f"{m} {a}" for m, a in TASK_ROUTES]
)
@pytest.mark.parametrize(
    "task_id", [unknown_task_id(), "not-a-uuid", "42"], ids=["unknown", "not a UUID", "a number"]
)
async def test_every_task_route_answers_404_for_an_unknown_id(
    operator: Client, method: str, action: str, task_id: str
) -> None:
    body = {"name": "renamed"} if method == "PUT" else None

    response = await operator.call(method, task_path(task_id, action), body)

    assert_error(response, 404)


async def test_a_deleted_task_is_404_on_every_route_but_its_events(operator: Client) -> None:
    task = await create_task(operator)
    assert (await operator.delete(task_path(task["id"])))[0] == 204

    for method, action in TASK_ROUTES:
        body = {"name": "renamed"} if method == "PUT" else None
        response = await operator.call(method, task_path(task["id"], action), body)
        if action == "events":
            assert response[0] == 200, response
        else:
            assert_error(response, 404)


# --- 409 ----------------------------------------------------------------------------------------


async def test_pausing_a_paused_task_is_409(operator: Client) -> None:
    task = await create_task(operator)
    status, paused = await operator.post(task_path(task["id"], "pause"))
    assert status == 200, paused

    assert_error(await operator.post(task_path(task["id"], "pause")), 409)
    assert await fetch_task(operator, task["id"]) == paused
    assert await event_types(operator, task["id"]) == ["TaskCreated", "TaskPaused"]


async def test_resuming_a_task_that_is_not_paused_is_409(operator: Client) -> None:
    task = await create_task(operator)

    assert_error(await operator.post(task_path(task["id"], "resume")), 409)
    assert await fetch_task(operator, task["id"]) == task
    assert await event_types(operator, task["id"]) == ["TaskCreated"]


# --- 413 ----------------------------------------------------------------------------------------


async def send_large(client: Client, method: str, path: str, body: dict[str, Any]) -> Response:
    """Sends body as a stream: aiohttp warns (an error here) about bodies over 1 MiB as bytes."""
    headers = json_headers() | {"Authorization": f"Bearer {client.token}"}
    stream = io.BytesIO(json.dumps(body).encode())
    async with client.session.request(
        method, client.base_url + path, data=stream, headers=headers
    ) as response:
        return response.status, await response.json()


async def test_a_create_body_over_one_mib_is_413(operator: Client) -> None:
    body = command_task(description="x" * ONE_MIB)

    assert_error(await send_large(operator, "POST", TASKS, body), 413)
    assert (await list_tasks(operator))["total"] == 0


async def test_an_update_body_over_one_mib_is_413_and_changes_nothing(operator: Client) -> None:
    task = await create_task(operator)

    body = {"description": "x" * ONE_MIB}

    assert_error(await send_large(operator, "PUT", task_path(task["id"]), body), 413)
    assert await fetch_task(operator, task["id"]) == task


# --- 422 on create ------------------------------------------------------------------------------


def without(body: dict[str, Any], field: str) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name != field}


INVALID_CREATES: dict[str, tuple[dict[str, Any], str]] = {
    "empty name": (command_task(name=""), "name"),
    "no name": (without(command_task(), "name"), "name"),
    "no task_type": (without(command_task(), "task_type"), "task_type"),
    "unknown task_type": (command_task(task_type="shell_script"), "task_type"),
    "unknown field": (command_task(colour="red"), "colour"),
    "unknown recurrence_type": (command_task(recurrence_type="hourly"), "recurrence_type"),
    "hour 25": (command_task(recurrence_config={"time": "25:00"}), "recurrence_config.time"),
    "time not a string": (command_task(recurrence_config={"time": 300}), "recurrence_config.time"),
    "daily without time": (command_task(recurrence_config={}), "recurrence_config.time"),
    "key of another type": (
        command_task(recurrence_config={"time": "03:00", "cron": "* * * * *"}),
        "recurrence_config.cron",
    ),
    "unknown timezone": (
        command_task(recurrence_config={"time": "03:00", "timezone": "Mars/Olympus_Mons"}),
        "recurrence_config.timezone",
    ),
    "weekday 8": (
        software_task(recurrence_config={"time": "09:00", "days": [1, 8]}),
        "recurrence_config.days",
    ),
    "day_of_month 32": (
        command_task(
            recurrence_type="monthly", recurrence_config={"time": "12:00", "day_of_month": 32}
        ),
        "recurrence_config.day_of_month",
    ),
    "bad cron": (
        command_task(recurrence_type="custom", recurrence_config={"cron": "61 * * * *"}),
        "recurrence_config.cron",
    ),
    "four-field cron": (
        command_task(recurrence_type="custom", recurrence_config={"cron": "0 8 * *"}),
        "recurrence_config.cron",
    ),
    "interval of 0 s": (
        command_task(recurrence_type="interval", recurrence_config={"every_seconds": 0}),
        "recurrence_config.every_seconds",
    ),
    "run_at in the past": (
        command_task(recurrence_type="once", recurrence_config={"run_at": YESTERDAY}),
        "recurrence_config.run_at",
    ),
    "run_at not a time": (
        command_task(recurrence_type="once", recurrence_config={"run_at": "tomorrow"}),
        "recurrence_config.run_at",
    ),
    "device id not a string": (command_task(device_ids=["local-1", 5]), "device_ids"),
    "device ids not a list": (command_task(device_ids="local-1"), "device_ids"),
    "device id with a dot": (command_task(device_ids=["web-1.example.com"]), "device_ids"),
    "group id not an int": (command_task(group_ids=["web"]), "group_ids"),
    "group that does not exist": (command_task(group_ids=[424242]), "group_ids"),
    "no command_payload": (command_task(task_payload={}), "task_payload.command_payload"),
    "payload of another type": (
        command_task(task_payload={"software_payload": {"package": "nginx"}}),
        "task_payload.software_payload",
    ),
    "command missing": (
        command_task(task_payload={"command_payload": {"shell": "bash"}}),
        "task_payload.command_payload.command",
    ),
    "timeout of 0 s": (
        command_task(task_payload={"command_payload": {"command": "ls", "timeout_seconds": 0}}),
        "task_payload.command_payload.timeout_seconds",
    ),
    "software without package": (
        software_task(task_payload={"software_payload": {"version": "1"}}),
        "task_payload.software_payload.package",
    ),
}


@pytest.mark.parametrize(("body", "field"), INVALID_CREATES.values(), ids=INVALID_CREATES.keys())
async def test_an_invalid_create_is_422_naming_the_field(
    operator: Client, body: dict[str, Any], field: str
) -> None:
    response = await operator.post(TASKS, body)

    assert_invalid(response, field)
    assert (await list_tasks(operator))["total"] == 0


async def test_a_missing_field_is_named_as_required(operator: Client) -> None:
    assert_invalid(await operator.post(TASKS, without(command_task(), "name")), "name", "required")


async def test_a_body_that_is_not_an_object_is_refused(operator: Client) -> None:
    status, body = await operator.post(TASKS, ["not", "an", "object"])

    assert status in (400, 422), body
    assert_error((status, body), status)


# --- 422 on update, and the task stays as it was -------------------------------------------------


INVALID_UPDATES: dict[str, tuple[dict[str, Any], str, str]] = {
    "task_type": ({"task_type": "software_deployment"}, "task_type", "cannot be changed"),
    "empty name": ({"name": ""}, "name", ""),
    "hour 25": ({"recurrence_config": {"time": "25:00"}}, "recurrence_config.time", ""),
    "type without its config": ({"recurrence_type": "weekly"}, "recurrence_config.days", ""),
    "run_at in the past": (
        {"recurrence_type": "once", "recurrence_config": {"run_at": YESTERDAY}},
        "recurrence_config.run_at",
        "",
    ),
    "status is not writable": ({"status": "paused"}, "status", ""),
    "id is not writable": ({"id": unknown_task_id()}, "id", ""),
    "device id not a string": ({"device_ids": [1]}, "device_ids", ""),
    "nothing to change": ({}, "body", "at least one"),
    "group that does not exist": ({"group_ids": [424242]}, "group_ids", "no device group"),
    "payload of another type": (
        {"task_payload": {"file_payload": {"file_id": "f", "destination": "/x"}}},
        "task_payload.file_payload",
        "",
    ),
}


@pytest.mark.parametrize(
    ("patch", "field", "why"), INVALID_UPDATES.values(), ids=INVALID_UPDATES.keys()
)
async def test_an_invalid_update_is_422_and_leaves_the_task_unchanged(
    operator: Client, patch: dict[str, Any], field: str, why: str
) -> None:
    task = await create_task(operator)

    response = await operator.put(task_path(task["id"]), patch)

    assert_invalid(response, field, why)
    assert await fetch_task(operator, task["id"]) == task
    assert await event_types(operator, task["id"]) == ["TaskCreated"]


# --- 422 on query parameters --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=sleeping", "status"),
        ("task_type=shell_script", "task_type"),
        ("limit=ten", "limit"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("offset=-1", "offset"),
    ],
)
async def test_an_invalid_list_query_is_422_naming_the_parameter(
    operator: Client, query: str, field: str
) -> None:
    assert_invalid(await operator.get(f"{TASKS}?{query}"), field)


async def test_an_invalid_executions_page_is_422_naming_the_parameter(operator: Client) -> None:
    task = await create_task(operator)

    assert_invalid(await operator.get(task_path(task["id"], "executions?limit=x")), "limit")


# --- 422 messages in words (they are part of the API) -------------------------------------------

HUMAN_MESSAGES: dict[str, tuple[dict[str, Any], str, str]] = {
    "timeout of 0 s": (
        command_task(task_payload={"command_payload": {"command": "ls", "timeout_seconds": 0}}),
        "task_payload.command_payload.timeout_seconds",
        "must be at least 1 second",
    ),
    "file mode not octal": (
        command_task(
            task_type="file_deployment",
            task_payload={"file_payload": {"file_id": "f", "destination": "/x", "mode": "0999"}},
        ),
        "task_payload.file_payload.mode",
        "must be an octal mode like 0644 or 755",
    ),
    "cron minute 61": (
        command_task(recurrence_type="custom", recurrence_config={"cron": "61 * * * *"}),
        "recurrence_config.cron",
        "minute 61 is out of range 0-59",
    ),
    "unknown shell": (
        command_task(task_payload={"command_payload": {"command": "ls", "shell": "fish"}}),
        "task_payload.command_payload.shell",
        "must be one of bash, cmd, powershell, pwsh, python3, sh, zsh, got 'fish'",
    ),
    "device id with a dot": (
        command_task(device_ids=["web-1.example.com"]),
        "device_ids.0",
        "must hold only letters, digits, _, : and - (like web-1)",
    ),
    "empty name": (command_task(name=""), "name", "must not be empty"),
}


@pytest.mark.parametrize(
    ("body", "field", "reason"), HUMAN_MESSAGES.values(), ids=HUMAN_MESSAGES.keys()
)
async def test_a_refused_field_is_explained_in_words(
    operator: Client, body: dict[str, Any], field: str, reason: str
) -> None:
    error = assert_error(await operator.post(TASKS, body), 422)

    assert error["message"] == f"{field}: {reason}"
    assert error["details"] == {"field": field, "reason": reason}


async def test_a_preview_of_a_bad_cron_is_explained_in_words(operator: Client) -> None:
    schedule = {"recurrence_type": "custom", "recurrence_config": {"cron": "0 24 * * *"}}

    error = assert_error(await operator.post("/api/schedule/preview", schedule), 422)

    assert error["message"] == "recurrence_config.cron: hour 24 is out of range 0-23"
