"""The reconciler against a run whose executor was killed (DESIGN.md problem 5): real executor,
real agents, and the reconciler's pass driven through its clock seam, `reconcile(db, task_type,
now)`, to a time past the run's deadline, as it would run in any executor still alive then."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.executor.reconciler import MARGIN, NEVER_STARTED, reconcile
from tests.e2e.fleet import Fleet
from tests.e2e.processes import wait_until
from tests.stack import Client, Stack

pytestmark = pytest.mark.e2e

SECOND = timedelta(seconds=1)
STOPPED = "no result was recorded before the deadline (its executor stopped)"
NOT_ITS_TURN = "never started: its executor stopped before its turn"
BY_RECONCILER = "finished by the reconciler: no executor completed it before its deadline"
NEVER_TAKEN = "never started: no executor took it within an hour of being due"


async def stream(pool: asyncpg.Pool, execution_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch(
        "SELECT type, data::text FROM events WHERE stream_id = $1 ORDER BY version", execution_id
    )
    return [(row["type"], json.loads(row["data"])) for row in rows]


async def start_run(api: Client, command: str, devices: list[str], **delivery: Any) -> str:
    status, accepted = await api.post(
        "/api/executions",
        {
            "name": "patch the fleet",
            "task_type": "command",
            "device_ids": devices,
            "task_payload": {"command_payload": {"command": command, "timeout_seconds": 60}},
            "delivery": delivery,
        },
    )
    assert status == 202, accepted
    return str(accepted["execution_id"])


async def ended(api: Client, execution_id: str, fleet: Fleet) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def done() -> bool:
        status, run = await api.get(f"/api/executions/{execution_id}")
        assert status == 200, run
        found.update(run)
        return bool(run["status"] != "running")

    await wait_until(done, 20, f"run {execution_id} to end", fleet.watched)
    return found


async def test_a_run_whose_executor_died_is_ended_once_past_its_deadline(
    fleet: Fleet, stack: Stack, tmp_path: Path
) -> None:
    pool, gate, runs = stack.pool, tmp_path / "gate", tmp_path / "runs"
    runs.mkdir()
    executor = fleet.executor()
    devices = ["dev-a", "dev-b", "dev-c"]
    for device in devices:
        fleet.agent(device)
    await fleet.wait_online(devices)
    # One device at a time: dev-a succeeds at once, dev-b then runs until the gate opens, and
    # dev-c waits for its turn.
    command = (
        '[ "$DEPLOYX_DEVICE_ID" = dev-a ] && { echo patched; exit 0; }; '
        f'touch {runs}/"$DEPLOYX_DEVICE_ID"; while [ ! -e {gate} ]; do sleep 0.05; done'
    )
    execution_id = await start_run(fleet.api, command, devices, max_concurrency=1)

    async def dev_b_runs() -> bool:
        return (runs / "dev-b").exists()

    try:
        await wait_until(dev_b_runs, 30, "dev-b to run its job", fleet.watched)
        executor.kill9()
        before = await stream(pool, execution_id)
        (started,) = [data for kind, data in before if kind == "ExecutionStarted"]
        deadline = datetime.fromisoformat(started["deadline"])

        # Alive executors' reconcilers leave it alone until its deadline (and a margin) passed.
        assert await reconcile(pool, "command", datetime.now(UTC)) == 0
        assert await reconcile(pool, "command", deadline + MARGIN - SECOND) == 0
        assert await stream(pool, execution_id) == before

        late = deadline + MARGIN + SECOND
        async with pool.acquire() as conn, conn.transaction():
            # The projector may not write to the executions table meanwhile: each pass below
            # finds the run still running there, as it does when the read side lags.
            await conn.execute("LOCK TABLE executions IN SHARE MODE")
            # Past it, two executors' reconcilers at once: one closes it, the other does not.
            closed = await asyncio.gather(*(reconcile(pool, "command", late) for _ in range(2)))
            assert sorted(closed) == [0, 1]
            # A later pass finds it ended in the log, whatever the read table still says.
            assert await reconcile(pool, "command", late) == 0
    finally:
        gate.touch()  # dev-b's job ends, whatever happened

    after = await stream(pool, execution_id)
    assert after[: len(before)] == before
    counts = Counter(kind for kind, _ in after)
    assert (counts["ExecutionStarted"], counts["ExecutionCompleted"]) == (1, 1), after
    results = {data["device_id"]: data for kind, data in after if kind == "DeviceResultRecorded"}
    assert {device: result["status"] for device, result in results.items()} == {
        "dev-a": "success",
        "dev-b": "timeout",
        "dev-c": "skipped",
    }
    assert (results["dev-b"]["error"], results["dev-c"]["error"]) == (STOPPED, NOT_ITS_TURN)
    assert after[-1][0] == "ExecutionCompleted"
    completed = after[-1][1]
    assert (completed["status"], completed["error_message"]) == ("failed", BY_RECONCILER)
    counted = [completed[f"devices_{n}"] for n in ("targeted", "succeeded", "failed")]
    assert counted == [3, 1, 2]

    # What a user reads: the run failed, with each device's status and dev-a's real output.
    run = await ended(fleet.api, execution_id, fleet)
    assert (run["status"], run["error_message"]) == ("failed", BY_RECONCILER)
    details = run["result"]["execution_details"]
    assert {device: details[device]["status"] for device in devices} == {
        "dev-a": "success",
        "dev-b": "timeout",
        "dev-c": "skipped",
    }
    assert details["dev-a"]["stdout"] == "patched\n"
    assert not (runs / "dev-c").exists()

    # Another pass, once the read tables show the end too, changes nothing.
    assert await reconcile(pool, "command", late + timedelta(hours=1)) == 0
    assert await stream(pool, execution_id) == after


async def test_a_run_no_executor_ever_took_is_failed_an_hour_after_it_was_due(
    fleet: Fleet, stack: Stack
) -> None:
    pool = stack.pool
    # No executor runs: the request stays in JetStream, and the run shows as running.
    execution_id = await start_run(fleet.api, "true", ["dev-a"])
    (requested,) = [data for kind, data in await stream(pool, execution_id)]
    due = datetime.fromisoformat(requested["requested_at"])

    assert await reconcile(pool, "command", due + NEVER_STARTED - SECOND) == 0
    assert await reconcile(pool, "command", due + NEVER_STARTED + SECOND) == 1

    events = await stream(pool, execution_id)
    assert [kind for kind, _ in events] == ["ExecutionRequested", "ExecutionCompleted"]
    completed = events[-1][1]
    assert (completed["status"], completed["error_message"]) == ("failed", NEVER_TAKEN)
    run = await ended(fleet.api, execution_id, fleet)
    assert (run["status"], run["error_message"]) == ("failed", NEVER_TAKEN)
    assert await reconcile(pool, "command", due + 2 * NEVER_STARTED) == 0
    assert len(await stream(pool, execution_id)) == 2
