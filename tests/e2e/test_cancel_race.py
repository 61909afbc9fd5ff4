"""Two operators cancel the same run at the same moment: one cancel is recorded, the other is
told the run is being canceled already (its append lost the race, and it decided again)."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.processes import wait_until
from tests.stack import Stack

pytestmark = pytest.mark.e2e


async def appends_waiting(stack: Stack, count: int) -> bool:
    waiting = await stack.pool.fetchval(
        "SELECT count(*) FROM pg_locks WHERE relation = 'events'::regclass AND NOT granted"
    )
    return int(waiting) >= count


async def test_two_cancels_at_once_record_one_and_refuse_the_other(stack: Stack) -> None:
    alice = await stack.client("alice", "admin")
    bob = await stack.client("bob", "admin")
    status, accepted = await alice.post(
        "/api/executions",
        {
            "name": "long",
            "task_type": "command",
            "device_ids": ["dev-1"],
            "task_payload": {"command_payload": {"command": "sleep 600"}},
        },
    )
    assert status == 202, accepted
    cancel = f"/api/executions/{accepted['execution_id']}/cancel"

    async with stack.pool.acquire() as conn, conn.transaction():
        # Appends wait meanwhile (reads do not): both cancels read the run, then both append.
        await conn.execute("LOCK TABLE events IN SHARE MODE")
        racing = asyncio.gather(
            alice.post(cancel, {"reason": "alice says stop"}),
            bob.post(cancel, {"reason": "bob says stop"}),
        )
        await wait_until(lambda: appends_waiting(stack, 2), 10, "both cancels to append", [])
    answers = await racing

    assert sorted(status for status, _ in answers) == [202, 409], answers
    (refused,) = [body for status, body in answers if status == 409]
    assert "being canceled already" in refused["error"]["message"]
    (canceled,) = [body for status, body in answers if status == 202]
    rows = await stack.pool.fetch(
        "SELECT data ->> 'reason' AS reason FROM events "
        "WHERE stream_id = $1 AND type = 'ExecutionCancelRequested'",
        accepted["execution_id"],
    )
    assert len(rows) == 1
    assert rows[0]["reason"] in ("alice says stop", "bob says stop")
    assert canceled["id"] == accepted["execution_id"]
