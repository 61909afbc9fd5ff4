"""Two executors on one execution at once (DESIGN.md problem 5): a hung executor's run goes to
another replica after the ack wait, then the hung one wakes and both record results for the
same run. Appends at an expected version settle every race: one completion, no result lost or
recorded twice, and no device runs its job twice."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.e2e.fleet import Fleet
from tests.e2e.processes import wait_until
from tests.stack import Stack

pytestmark = pytest.mark.e2e

# A run whose executor stops acknowledging goes to another replica after this many seconds.
ACK_WAIT_SECONDS = 3


async def stream(pool: asyncpg.Pool, execution_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch(
        "SELECT type, data::text FROM events WHERE stream_id = $1 ORDER BY version", execution_id
    )
    return [(row["type"], json.loads(row["data"])) for row in rows]


async def test_two_executors_racing_on_one_run_complete_it_once_with_every_result(
    fleet: Fleet, stack: Stack, tmp_path: Path
) -> None:
    fleet.services.env["DEPLOYX_EXECUTOR_ACK_WAIT"] = str(ACK_WAIT_SECONDS)
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    runs.mkdir()
    first = fleet.executor(name="executor-first")
    devices = ["dev-a", "dev-b"]
    for device in devices:
        fleet.agent(device)
    await fleet.wait_online(devices)
    # Each device's job runs until the test opens the gate, so that both results come back
    # while both executors hold the run.
    command = (
        f'echo run >> {runs}/"$DEPLOYX_DEVICE_ID"; '
        f'while [ ! -e {gate} ]; do sleep 0.05; done; echo "done on $DEPLOYX_DEVICE_ID"'
    )
    status, accepted = await fleet.api.post(
        "/api/executions",
        {
            "name": "race",
            "task_type": "command",
            "device_ids": devices,
            "task_payload": {"command_payload": {"command": command, "timeout_seconds": 120}},
        },
    )
    assert status == 202, accepted
    execution_id = accepted["execution_id"]

    async def both_running() -> bool:
        return all((runs / device).exists() for device in devices)

    try:
        await wait_until(both_running, 30, "both devices to run the job", fleet.watched)
        # The first executor hangs (as a process that is swapped out or stuck would): it stops
        # telling JetStream it is still at the run, which goes to the second after the ack wait.
        first.pause()
        second = fleet.executor(name="executor-second")
        await second.wait_for_log("jobs_dispatched", timeout=10 * ACK_WAIT_SECONDS)
        first.resume()  # and now both hold the run, each with its own view of the stream
    finally:
        first.resume()
        gate.touch()

    async def completed() -> bool:
        status, run = await fleet.api.get(f"/api/executions/{execution_id}")
        return status == 200 and run["status"] != "running"

    await wait_until(completed, 30, "the run to complete", fleet.watched)

    events = await stream(stack.pool, execution_id)
    counts = Counter(kind for kind, _ in events)
    assert (counts["ExecutionStarted"], counts["ExecutionCompleted"]) == (1, 1), events
    assert events[-1][0] == "ExecutionCompleted"
    results = [data for kind, data in events if kind == "DeviceResultRecorded"]
    assert sorted((r["device_id"], r["status"], r["stdout"]) for r in results) == [
        ("dev-a", "success", "done on dev-a\n"),
        ("dev-b", "success", "done on dev-b\n"),
    ]
    done = events[-1][1]
    assert (done["status"], done["devices_succeeded"], done["devices_failed"]) == ("success", 2, 0)
    for device in devices:
        assert (runs / device).read_text() == "run\n", f"{device} ran its job more than once"
    # Both executors are still up, and stay so: neither failed on the race.
    assert first.running and second.running
