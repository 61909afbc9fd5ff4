"""`deployx events` as an operator runs it: the audit log as JSON lines, in log order, for the
whole log, one task, or after a position."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from tests.e2e.api import EVENT_FIELDS, TASKS, command_task, task_path
from tests.e2e.processes import deployx_command
from tests.stack import Stack

pytestmark = pytest.mark.e2e


async def deployx_events(database_url: str, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    """Its exit code, the JSON lines it printed, and what it said on stderr."""
    env = dict(os.environ) | {"DEPLOYX_DATABASE_URL": database_url, "DEPLOYX_LOG_FORMAT": "json"}
    proc = await asyncio.create_subprocess_exec(
        *deployx_command(),
        "events",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, [json.loads(line) for line in out.splitlines()], err.decode()


async def test_deployx_events_prints_the_log_a_task_or_what_follows_a_position(
    stack: Stack, database_url: str
) -> None:
    api = await stack.client("ops", "operator")
    status, nightly = await api.post(TASKS, command_task(name="nightly"))
    assert status == 201, nightly
    status, other = await api.post(TASKS, command_task(name="other"))
    assert status == 201, other
    status, paused = await api.post(task_path(nightly["id"], "pause"))
    assert status == 200, paused

    code, everything, err = await deployx_events(database_url)
    assert (code, err) == (0, "")
    assert [(e["type"], e["stream_id"]) for e in everything] == [
        ("TaskCreated", nightly["id"]),
        ("TaskCreated", other["id"]),
        ("TaskPaused", nightly["id"]),
    ]
    assert all(set(event) == set(EVENT_FIELDS) for event in everything), everything
    assert everything[0]["data"]["name"] == "nightly"
    assert everything[0]["metadata"]["user"] == "ops"
    # The same history the API shows for the task.
    _, history = await api.get(task_path(nightly["id"], "events"))
    code, of_task, _ = await deployx_events(database_url, "--task", nightly["id"])
    assert code == 0
    assert of_task == history["items"]
    assert [e["type"] for e in of_task] == ["TaskCreated", "TaskPaused"]

    code, after, _ = await deployx_events(database_url, "--after", str(everything[0]["position"]))
    assert (code, after) == (0, everything[1:])
    code, tail, _ = await deployx_events(
        database_url, "--task", nightly["id"], "--after", str(everything[1]["position"])
    )
    assert (code, [e["type"] for e in tail]) == (0, ["TaskPaused"])

    code, nothing, err = await deployx_events(database_url, "--after", "999999")
    assert (code, nothing) == (1, [])
    assert "no event has position 999999" in err
