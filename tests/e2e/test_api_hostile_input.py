"""Hostile requests: bodies and headers built to crash or stall the API get a 4xx in the
contract's shape, and nothing is stored."""

from __future__ import annotations

import asyncio
import json

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


# --- requests aiohttp cannot read: answered before any view, still in the contract's shape --------


async def raw_exchange(base_url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Sends bytes as they are and reads the whole answer: status, headers, body."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        answer = await reader.read()  # the server closes after an error answer
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


UNREADABLE = {
    "a header value over 8 KB": (
        b"GET /api/me HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        "headers",
    ),
    "a header name over 8 KB": (
        b"GET /api/me HTTP/1.1\r\nHost: x\r\nX-" + b"a" * 9000 + b": 1\r\n\r\n",
        "headers",
    ),
    "a request line over 8 KB": (
        b"GET /api/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "headers",
    ),
    "200 headers": (
        b"GET /api/me HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: 1\r\n" % n for n in range(200))
        + b"\r\n",
        "headers",
    ),
    "not HTTP": (b"HELLO THERE\r\n\r\n", "request"),
}


@pytest.mark.parametrize(("request_bytes", "field"), UNREADABLE.values(), ids=UNREADABLE.keys())
async def test_a_request_aiohttp_cannot_read_gets_a_json_400(
    shared_stack: Stack, request_bytes: bytes, field: str
) -> None:
    status, headers, body = await raw_exchange(shared_stack.base_url, request_bytes)

    assert status == 400, body
    assert headers["content-type"].startswith("application/json"), headers
    error = assert_error((status, json.loads(body)), 400, "malformed_request")
    assert error["details"]["field"] == field, error
    assert error["message"].startswith(f"{field}: "), error
    assert headers["x-content-type-options"] == "nosniff", headers
    assert headers["content-security-policy"].startswith("default-src 'self'"), headers


@pytest.mark.parametrize("path", [TASKS, "/api/files"])
async def test_a_body_that_does_not_decompress_is_400_not_500(operator: Client, path: str) -> None:
    headers = json_headers() | {"Content-Encoding": "gzip"}

    response = await operator.call("POST", path, data=b"this is not gzip", headers=headers)

    error = assert_error(response, 400, "malformed_body")
    assert "content-encoding" in error["message"].lower(), error
    assert (await list_tasks(operator))["total"] == 0
