"""Poison events (issue 9, attacks 1 and 4 behind the boundary): an event a consumer of the log
cannot handle is set aside where an admin sees it, the consumer carries on with the rest, and
the admin retries it once the cause is fixed. Too large an event is refused before it is
stored, and /readyz names a reader of the log that stopped moving."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from events.execution import DeviceResultRecorded, ExecutionCompleted, ExecutionStarted
from services.infra.store import append
from tests.e2e.fleet import TASKS, command_task, run_now
from tests.e2e.processes import Services, wait_until
from tests.stack import Client, Stack, running_stack

pytestmark = pytest.mark.e2e
HUGE_EXIT_CODE = 1_099_511_627_776  # more than the executions table's int column holds


async def open_dead_letters(api: Client, consumer: str) -> list[dict[str, Any]]:
    status, page = await api.get(f"/api/admin/dead-letters?consumer={consumer}")
    assert status == 200, page
    return sorted(page["items"], key=lambda letter: letter["position"])


async def _until(condition: Any, what: str, timeout: float = 15) -> None:
    await wait_until(condition, timeout, what, [])


async def _execution(api: Client, task_id: str, execution_id: str) -> dict[str, Any]:
    _, page = await api.get(f"{TASKS}/{task_id}/executions")
    return next(item for item in page["items"] if item["id"] == execution_id)


async def test_an_event_a_projection_cannot_apply_is_set_aside_and_retried_once_fixed(
    stack: Stack,
) -> None:
    admin = await stack.client("root", "admin")
    poisoned_task, poisoned_run = await run_now(admin, command_task("true", ["dev-1"]))
    now = datetime.now(UTC)
    # What an older executor, before the boundary checks, could have written.
    await append(
        stack.pool,
        poisoned_run,
        "command",
        [
            ExecutionStarted(
                execution_id=poisoned_run,
                task_id=poisoned_task,
                trigger="manual",
                scheduled_for=now,
                started_at=now,
                device_ids=["dev-1"],
            ),
            DeviceResultRecorded(
                execution_id=poisoned_run,
                task_id=poisoned_task,
                device_id="dev-1",
                status="failed",
                exit_code=HUGE_EXIT_CODE,
                recorded_at=now,
            ),
            ExecutionCompleted(
                execution_id=poisoned_run,
                task_id=poisoned_task,
                status="failed",
                completed_at=now,
                devices_targeted=1,
                devices_failed=1,
            ),
        ],
        expected_version=0,
    )

    letters: list[dict[str, Any]] = []

    async def set_aside() -> bool:
        letters[:] = await open_dead_letters(admin, "executions")
        return len(letters) == 2

    await _until(set_aside, "the poison event and the one behind it to be set aside")
    poison, parked = letters
    assert (poison["event_type"], poison["stream_id"]) == ("DeviceResultRecorded", poisoned_run)
    assert "out of int32 range" in poison["error"] or "integer out of range" in poison["error"]
    assert (parked["event_type"], parked["error"]) == (
        "ExecutionCompleted",
        "waits behind an earlier event of its stream that was set aside",
    )

    # Everyone else goes on: a new task, its run, its read tables.
    other_task, other_run = await run_now(admin, command_task("true", ["dev-2"]))
    assert (await _execution(admin, other_task, other_run))["status"] == "running"
    assert (await _execution(admin, poisoned_task, poisoned_run))["status"] == "running"
    _, metrics = await stack.anonymous().get("/metrics")
    assert 'deployx_dead_letters_open{consumer="executions"} 2.0' in metrics

    # The cause is fixed (here: a wider column); the admin retries; the stream is applied.
    await stack.pool.execute("ALTER TABLE execution_results ALTER COLUMN exit_code TYPE bigint")
    status, retried = await admin.post(f"/api/admin/dead-letters/{poison['id']}/retry")
    assert status == 202, retried
    assert retried["retry_requested_at"] is not None

    async def resolved() -> bool:
        return not await open_dead_letters(admin, "executions")

    await _until(resolved, "the retried dead letters to be resolved")
    execution = await _execution(admin, poisoned_task, poisoned_run)
    assert execution["status"] == "failed"
    assert execution["result"]["execution_details"]["dev-1"]["exit_code"] == HUGE_EXIT_CODE
    status, again = await admin.post(f"/api/admin/dead-letters/{poison['id']}/retry")
    assert (status, again["error"]["code"]) == (409, "conflict")


async def test_only_an_admin_sees_or_retries_dead_letters(stack: Stack) -> None:
    operator = await stack.client("op", "operator")
    for method, path in [
        ("GET", "/api/admin/dead-letters"),
        ("POST", "/api/admin/dead-letters/1/retry"),
        ("GET", "/api/admin/rejected-messages"),
    ]:
        status, body = await operator.call(method, path)
        assert (status, body["error"]["code"]) == (403, "forbidden"), (path, body)
    admin = await stack.client("root", "admin")
    status, body = await admin.post("/api/admin/dead-letters/987654/retry")
    assert (status, body["error"]["code"]) == (404, "not_found")


async def test_a_task_too_large_for_the_log_is_refused_before_anything_is_stored(
    stack: Stack,
) -> None:
    operator = await stack.client("op", "operator")
    events_before = await stack.pool.fetchval("SELECT count(*) FROM events")
    # Just under the 1 MiB body limit: thousands of long device ids.
    device_ids = [f"device-{i:05d}-" + "x" * 100 for i in range(7000)]
    body = command_task("true", device_ids)
    assert len(json.dumps(body)) < 1024 * 1024

    status, answer = await operator.post(TASKS, body)

    assert status == 413, answer
    assert answer["error"]["code"] == "too_large"
    assert "TaskCreated" in answer["error"]["message"]
    assert await stack.pool.fetchval("SELECT count(*) FROM events") == events_before
    _, page = await operator.get(TASKS)
    assert page["total"] == 0
    status, task = await operator.post(TASKS, command_task("true", device_ids[:10]))
    assert status == 201, task


async def _insert_raw_event(pool: asyncpg.Pool, event_type: str, data: dict[str, Any]) -> int:
    """An event written past the store's size bound (by an older version, or by hand)."""
    return int(
        await pool.fetchval(
            """
            INSERT INTO events (id, stream_id, version, type, category, data)
            VALUES ($1, $2, 1, $3, 'devices', $4::jsonb) RETURNING position
            """,
            uuid.uuid4(),
            f"device-{uuid.uuid4().hex[:8]}",
            event_type,
            json.dumps(data),
        )
    )


async def test_an_event_too_large_for_nats_is_set_aside_by_the_relay(
    stack: Stack, tmp_path: Path, database_url: str, nats_url: str
) -> None:
    services = Services(tmp_path, database_url, nats_url)
    relay = services.start("relay", "relay")
    services.start("executor", ["executor", "--type", "command"])
    services.start("agent", ["agent", "--device-id", "dev-1", "--state-dir", str(tmp_path / "a")])
    admin = await stack.client("root", "admin")
    try:
        huge = {
            "device_id": "big",
            "hostname": "h" * (1536 * 1024),
            "registered_at": datetime.now(UTC).isoformat(),
        }
        position = await _insert_raw_event(stack.pool, "DeviceRegistered", huge)
        letters: list[dict[str, Any]] = []

        async def set_aside() -> bool:
            letters[:] = await open_dead_letters(admin, "relay")
            return bool(letters)

        await _until(set_aside, "the relay to set the huge event aside")
        assert letters[0]["position"] == position
        assert "max_payload" in letters[0]["error"]

        # Runs after it still reach the devices.
        async def online() -> bool:
            _, devices = await admin.get("/api/devices")
            return any(d["id"] == "dev-1" and d["online"] for d in devices["items"])

        await wait_until(online, 30, "dev-1 online", services.all)
        task_id, execution_id = await run_now(admin, command_task("echo ok", ["dev-1"]))

        async def succeeded() -> bool:
            execution = await _execution(admin, task_id, execution_id)
            return bool(execution["status"] == "success")

        await wait_until(succeeded, 20, "the run after the huge event", services.all)
        status, ready = await stack.anonymous().get("/readyz")
        assert (status, ready["checks"]["consumers"]) == (200, "ok")
    finally:
        services.stop_all()
    errors = [line for line in relay.log_lines() if line.get("level") == "error"]
    assert [line["event"] for line in errors] == ["event_set_aside"], relay.log_tail()


async def test_readyz_names_a_reader_of_the_log_that_stopped_moving(
    database_url: str, nats_url: str, tmp_path: Path
) -> None:
    services = Services(tmp_path, database_url, nats_url)
    async with running_stack(database_url, nats_url, stuck_after_seconds=1.0) as stack:
        admin = await stack.client("root", "admin")
        anonymous = stack.anonymous()
        relay = services.start("relay", "relay")
        try:
            await admin.post(TASKS, command_task("true", ["dev-1"]))
            await wait_until(
                lambda: _relay_caught_up(stack.pool), 20, "the relay to catch up", [relay]
            )
            relay.terminate()
            status, task = await admin.post(TASKS, command_task("true", ["dev-1"]))
            assert status == 201, task
            answer: dict[str, Any] = {}

            async def not_ready() -> bool:
                status, body = await anonymous.get("/readyz")
                answer.update(body)
                return status == 503

            await _until(not_ready, "/readyz to report the stopped relay")
            assert answer["checks"]["consumers"].startswith("stuck: relay has not passed position")
            assert answer["checks"]["database"] == "ok"

            relay.start()

            async def ready() -> bool:
                return (await anonymous.get("/readyz"))[0] == 200

            await wait_until(ready, 20, "/readyz to be ready again", [relay])
        finally:
            services.stop_all()


async def _relay_caught_up(pool: asyncpg.Pool) -> bool:
    behind = await pool.fetchval(
        """
        SELECT count(*) FROM events e, checkpoints c
        WHERE c.name = 'relay' AND (e.tx_id, e.position) > (c.tx_id, c.position)
        """
    )
    has_checkpoint = await pool.fetchval("SELECT count(*) FROM checkpoints WHERE name = 'relay'")
    return bool(has_checkpoint == 1 and behind == 0)
