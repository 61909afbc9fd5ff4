"""GET /api/executions across tasks with filters and isolation between users, GET one, and
POST .../cancel: 202 while it runs, 409 twice or once it has finished."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events.execution import ExecutionCompleted
from services.infra.store import append
from tests.e2e.fleet import TASKS, command_task, run_now
from tests.stack import Stack

pytestmark = pytest.mark.e2e


async def test_a_user_lists_the_runs_of_its_own_tasks_only(stack: Stack) -> None:
    alice = await stack.client("alice", "operator")
    bob = await stack.client("bob", "operator")
    admin = await stack.client("root", "admin")
    a_task, a_run = await run_now(alice, command_task("true", ["dev-1"]))
    _, b_run = await run_now(bob, command_task("true", ["dev-2"]))

    status, mine = await alice.get("/api/executions")
    assert status == 200, mine
    assert [(run["id"], run["task_id"]) for run in mine["items"]] == [(a_run, a_task)]
    assert mine["total"] == 1
    assert mine["items"][0]["name"] == "run it"
    assert mine["items"][0]["task_type"] == "command"
    assert mine["items"][0]["trigger"] == "manual"
    _, everyone = await admin.get("/api/executions")
    assert {run["id"] for run in everyone["items"]} == {a_run, b_run}
    assert (await alice.get(f"/api/executions/{b_run}"))[0] == 404
    status, one = await bob.get(f"/api/executions/{b_run}")
    assert (status, one["id"], one["status"]) == (200, b_run, "running")


async def test_runs_are_filtered_by_task_status_trigger_and_device(stack: Stack) -> None:
    admin = await stack.client("root", "admin")
    task_1, run_1 = await run_now(admin, command_task("true", ["dev-1"]))
    _, run_2 = await run_now(admin, command_task("true", ["dev-2"]))

    async def ids(query: str) -> list[str]:
        status, page = await admin.get(f"/api/executions?{query}")
        assert status == 200, page
        return [run["id"] for run in page["items"]]

    assert await ids(f"task_id={task_1}") == [run_1]
    assert await ids("status=running") == [run_2, run_1]  # newest first
    assert await ids("status=success") == []
    assert await ids("trigger=manual") == [run_2, run_1]
    assert await ids("trigger=schedule") == []
    status, refused = await admin.get("/api/executions?status=done")
    assert (status, refused["error"]["details"]["field"]) == (422, "status")
    status, refused = await admin.get("/api/executions?task_id=nope")
    assert (status, refused["error"]["details"]["field"]) == (422, "task_id")


async def test_cancel_answers_202_then_409_and_409_once_finished(stack: Stack) -> None:
    operator = await stack.client("op", "operator")
    viewer = await stack.client("viewer", "viewer")
    task_id, running = await run_now(operator, command_task("sleep 100", ["dev-1"]))

    assert (await viewer.post(f"/api/executions/{running}/cancel"))[0] == 403
    status, canceling = await operator.post(
        f"/api/executions/{running}/cancel", {"reason": "wrong host"}
    )
    assert status == 202, canceling
    assert canceling["status"] == "running"
    assert canceling["cancel_requested_at"] is not None
    status, again = await operator.post(f"/api/executions/{running}/cancel")
    assert (status, again["error"]["code"]) == (409, "conflict")
    rows = await stack.pool.fetch(
        "SELECT type, metadata->>'user' AS who FROM events WHERE stream_id = $1", running
    )
    assert [(row["type"], row["who"]) for row in rows] == [("ExecutionCancelRequested", "op")]

    _, finished = await run_now(operator, command_task("true", ["dev-1"]))
    now = datetime.now(UTC)
    done = ExecutionCompleted(
        execution_id=finished, task_id=task_id, status="success", completed_at=now
    )
    await append(stack.pool, finished, "command", [done], expected_version=0)
    status, late = await operator.post(f"/api/executions/{finished}/cancel")
    assert (status, late["error"]["code"]) == (409, "conflict")
    assert "finished already" in late["error"]["message"]
    assert (await operator.post(f"{TASKS}/x/execute"))[0] == 404
