"""A run the executor cannot start however often it tries (a poison request, as an older API
without the payload checks could have stored): after five deliveries it is set aside where an
admin sees it, the executor carries on with other runs, the reconciler ends the run, and the
admin's retry then resolves the dead letter without running anything."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from events.execution import ExecutionRequested
from services.executor.reconciler import NEVER_STARTED, reconcile
from services.infra.store import append
from tests.e2e.processes import Services, wait_until
from tests.stack import Client, Stack

pytestmark = pytest.mark.e2e

CONSUMER = "executor-command"
SECOND = timedelta(seconds=1)
NEVER_TAKEN = "never started: no executor took it within an hour of being due"


async def letters(api: Client, *, open_only: bool = True) -> list[dict[str, Any]]:
    query = f"consumer={CONSUMER}&open={'true' if open_only else 'false'}"
    status, page = await api.get(f"/api/admin/dead-letters?{query}")
    assert status == 200, page
    return list(page["items"])


async def run_of(api: Client, execution_id: str) -> dict[str, Any]:
    status, run = await api.get(f"/api/executions/{execution_id}")
    assert status == 200, run
    return dict(run)


async def stream_types(pool: asyncpg.Pool, execution_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT type FROM events WHERE stream_id = $1 ORDER BY version", execution_id
    )
    return [row["type"] for row in rows]


async def test_a_run_that_always_fails_is_set_aside_and_resolved_once_ended(
    stack: Stack, services: Services
) -> None:
    admin = await stack.client("root", "admin")
    relay = services.start("relay", "relay")
    executor = services.start("executor", ["executor", "--type", "command"])
    await executor.wait_for_log("executor_started")
    watched = [relay, executor]
    poisoned, requested_at = str(uuid.uuid4()), datetime.now(UTC)
    request = ExecutionRequested(
        execution_id=poisoned,
        trigger="adhoc",
        name="poison",
        task_type="command",
        task_payload={"command_payload": {"command": 42}},  # not a string: no job can be made
        device_ids=["dev-1"],
        requested_at=requested_at,
    )
    await append(stack.pool, poisoned, "command", [request], expected_version=0, metadata={})

    async def set_aside() -> bool:
        return bool(await letters(admin))

    await wait_until(set_aside, 90, "the poison run to be set aside", watched)
    (letter,) = await letters(admin)
    assert (letter["stream_id"], letter["event_type"]) == (poisoned, "ExecutionRequested")
    assert "command" in letter["error"], letter

    # The executor carries on: another run, to a device that never connected, ends at once.
    status, accepted = await admin.post(
        "/api/executions",
        {
            "name": "fine",
            "task_type": "command",
            "device_ids": ["never-seen"],
            "task_payload": {"command_payload": {"command": "true"}},
        },
    )
    assert status == 202, accepted

    async def other_ended() -> bool:
        return str((await run_of(admin, accepted["execution_id"]))["status"]) == "failed"

    await wait_until(other_ended, 30, "the other run to end", watched)

    # Retried while the cause is still there: it fails again and stays open.
    status, _ = await admin.post(f"/api/admin/dead-letters/{letter['id']}/retry")
    assert status == 202

    async def failed_again() -> bool:
        (again,) = await letters(admin)
        return bool(again["attempts"] > letter["attempts"] and not again["retry_requested_at"])

    await wait_until(failed_again, 30, "the retry to fail again", watched)
    assert await stream_types(stack.pool, poisoned) == ["ExecutionRequested"]

    # An hour after it was due the reconciler ends the run; retried now, the dead letter is
    # resolved and the run stays as the reconciler left it.
    assert await reconcile(stack.pool, "command", requested_at + NEVER_STARTED + SECOND) == 1
    status, _ = await admin.post(f"/api/admin/dead-letters/{letter['id']}/retry")
    assert status == 202

    async def resolved() -> bool:
        return not await letters(admin)

    await wait_until(resolved, 30, "the dead letter to be resolved", watched)
    (done,) = await letters(admin, open_only=False)
    assert done["resolved_at"] is not None
    assert await stream_types(stack.pool, poisoned) == ["ExecutionRequested", "ExecutionCompleted"]
    ended = await run_of(admin, poisoned)
    assert (ended["status"], ended["error_message"]) == ("failed", NEVER_TAKEN)
