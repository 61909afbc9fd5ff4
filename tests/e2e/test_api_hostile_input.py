"""Hostile requests: bodies and headers built to crash or stall the API get a 4xx in the
contract's shape, and nothing is stored."""

from __future__ import annotations

import pytest

from tests.e2e.api import (
    TASKS,
    assert_error,
    create_task,
    fresh_user,
    list_tasks,
    task_path,
)
from tests.stack import Client, Stack

DEEP = 100_000
PREVIEW = "/api/schedule/preview"


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


def json_headers() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def deep_in(field: str, create: bool = False) -> bytes:
    """A body whose `field` (a free-form JSON object) holds a value nested DEEP."""
    head = b'"name": "x", "task_type": "command", "recurrence_type": "daily", ' if create else b""
    return b"{" + head + f'"{field}": {{"x": '.encode() + nested(DEEP) + b"}}"


DEEP_REQUESTS = {
    "create, recurrence_config": ("POST", TASKS, deep_in("recurrence_config", create=True)),
    "create, task_payload": ("POST", TASKS, deep_in("task_payload", create=True)),
    "update, recurrence_config": ("PUT", "", deep_in("recurrence_config")),
    "update, task_payload": ("PUT", "", deep_in("task_payload")),
    "preview": ("POST", PREVIEW, deep_in("recurrence_config")),
}


@pytest.fixture
async def admin(shared_stack: Stack) -> Client:
    return await fresh_user(shared_stack, "admin")


@pytest.mark.parametrize(
    ("method", "path", "body"), DEEP_REQUESTS.values(), ids=DEEP_REQUESTS.keys()
)
async def test_json_nested_deeper_than_the_decoder_goes_is_400(
    operator: Client, method: str, path: str, body: bytes
) -> None:
    task = await create_task(operator)
    path = path or task_path(task["id"])

    response = await operator.call(method, path, data=body, headers=json_headers())

    error = assert_error(response, 400, "malformed_body")
    assert "nested" in error["message"], error
    assert (await list_tasks(operator))["items"] == [task]


@pytest.mark.parametrize("depth", [500, 900, 990])
async def test_json_nested_just_within_the_decoder_around_a_nul_is_refused(
    operator: Client, depth: int
) -> None:
    # Deep, but not too deep for the decoder, around the U+0000 that the NUL check looks for.
    raw = (
        b'{"name": "x", "task_type": "command", "recurrence_type": "daily", '
        b'"recurrence_config": {"time": "03:00", "x": ' + nested(depth, b'"\\u0000"') + b"}}"
    )

    status, answer = await operator.call("POST", TASKS, data=raw, headers=json_headers())

    assert status in (400, 422), answer
    error = assert_error((status, answer), status)
    assert status == 400 or error["details"]["field"].startswith("recurrence_config.x"), error
    assert (await list_tasks(operator))["total"] == 0
