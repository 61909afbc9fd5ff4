"""GET /api/schedule/stats counts every finished run a user may see, by its outcome: a canceled
run is neither a success nor a failure, and an ad-hoc run (no task) counts for whoever asked."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from events.base import Event
from events.execution import ExecutionCompleted, ExecutionRequested, ExecutionStarted
from services.engine.projector import catch_up
from services.infra.store import append
from tests.integration.test_projections import COMMAND_TASK
from tests.stack import Stack


async def finish(
    stack: Stack, execution_id: str, task_id: str, status: str, first: list[Event], user: str
) -> None:
    """What an executor records for a run on one device that ends with status."""
    now = datetime.now(UTC)
    events = [
        *first,
        ExecutionStarted(
            execution_id=execution_id,
            task_id=task_id,
            trigger="manual",
            scheduled_for=now,
            started_at=now,
            device_ids=["dev-1"],
            deadline=now + timedelta(minutes=5),
        ),
        ExecutionCompleted(
            execution_id=execution_id,
            task_id=task_id,
            status=status,
            completed_at=now,
            devices_targeted=1,
            devices_succeeded=int(status == "success"),
            devices_failed=int(status == "failed"),
        ),
    ]
    await append(
        stack.pool, execution_id, "command", events, expected_version=0, metadata={"user": user}
    )
    async with stack.pool.acquire() as conn:
        await catch_up(conn)


def outcomes(stats: dict[str, Any]) -> tuple[int, int, int, int, float]:
    return (
        stats["executions_total"],
        stats["executions_success"],
        stats["executions_failed"],
        stats["executions_canceled"],
        stats["success_rate"],
    )


async def test_stats_count_canceled_apart_and_ad_hoc_runs_for_who_asked(stack: Stack) -> None:
    owner = await stack.client("olga", "operator")
    stranger = await stack.client("sam", "operator")
    admin = await stack.client("root", "admin")
    _, task = await owner.post("/api/schedule/tasks", COMMAND_TASK)
    # Two runs of the task (execute now): one fails, one is canceled.
    for status in ("failed", "canceled"):
        _, run = await owner.post(f"/api/schedule/tasks/{task['id']}/execute")
        await finish(stack, run["execution_id"], task["id"], status, [], "olga")
    # An ad-hoc run olga asked for, which succeeds: no task behind it.
    adhoc = str(uuid.uuid4())
    requested = ExecutionRequested(
        execution_id=adhoc,
        trigger="adhoc",
        name="Run now: uptime",
        task_type="command",
        task_payload={"command_payload": {"command": "uptime"}},
        device_ids=["dev-1"],
        requested_at=datetime.now(UTC),
    )
    await finish(stack, adhoc, "", "success", [requested], "olga")

    _, mine = await owner.get("/api/schedule/stats")
    _, everyone = await admin.get("/api/schedule/stats")
    _, others = await stranger.get("/api/schedule/stats")

    # Success rate over the runs that succeeded or failed: the canceled one is neither.
    assert outcomes(mine) == (3, 1, 1, 1, 0.5)
    assert outcomes(everyone) == (3, 1, 1, 1, 0.5)
    assert outcomes(others) == (0, 0, 0, 0, 0.0)
    for stats in (mine, everyone):
        assert stats["executions_by_hour"][-1] | {"start": None} == {
            "start": None,
            "succeeded": 1,
            "failed": 1,
            "canceled": 1,
        }
        assert stats["executions_by_day"][-1]["succeeded"] == 1
        assert stats["executions_by_day"][-1]["canceled"] == 1
    assert sum(bucket["succeeded"] for bucket in others["executions_by_hour"]) == 0
