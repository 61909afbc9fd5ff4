"""A run with more targets than one event may list (DEPLOYX_DEVICES_PER_EVENT=10 here, 2,000 by
default): its start and its jobs go in several events, every device gets a result, and a
kill -9 of its executor mid-fan-out still ends it exactly once. The devices are simulated
over real NATS with the agent's protocol (bench/sim_agents.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bench.sim_agents import DEVICE_PREFIX, device_ids, sleep_command
from tests.e2e.fleet import Fleet, command_task, run_now
from tests.e2e.processes import wait_until
from tests.stack import Stack

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
DEVICES = 50
PER_EVENT = 10
ACK_WAIT_SECONDS = 3  # a killed executor's run is taken up again this soon


class SimulatedFleet:
    def __init__(self, process: subprocess.Popen[bytes], summary: Path) -> None:
        self.process, self.summary = process, summary

    def stop(self) -> dict[str, Any]:
        """Stops the devices; what they saw: per execution, the new jobs they were given."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(20)
        seen: dict[str, Any] = json.loads(self.summary.read_text())
        return seen


@pytest.fixture
def simulated(nats_url: str, tmp_path: Path) -> Iterator[SimulatedFleet]:
    env = os.environ | {"DEPLOYX_NATS_URL": nats_url, "PYTHONPATH": str(REPO_ROOT)}
    summary = tmp_path / "agents.json"
    command = [
        *(sys.executable, "-m", "bench.sim_agents", "--devices", str(DEVICES)),
        *("--interval", "2", "--summary", str(summary)),
    ]
    with open(tmp_path / "agents.log", "wb") as output:
        process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=output, stderr=output)
    try:
        yield SimulatedFleet(process, summary)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def small_events(fleet: Fleet) -> Fleet:
    fleet.services.env["DEPLOYX_DEVICES_PER_EVENT"] = str(PER_EVENT)
    fleet.services.env["DEPLOYX_EXECUTOR_ACK_WAIT"] = str(ACK_WAIT_SECONDS)
    return fleet


async def all_online(pool: asyncpg.Pool) -> bool:
    online = await pool.fetchval(
        "SELECT count(*) FROM devices WHERE starts_with(id, $1) AND online", DEVICE_PREFIX
    )
    return bool(online == DEVICES)


async def stream(pool: asyncpg.Pool, execution_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch(
        "SELECT type, data::text FROM events WHERE stream_id = $1 ORDER BY version", execution_id
    )
    return [(row["type"], json.loads(row["data"])) for row in rows]


async def finished(fleet: Fleet, execution_id: str, timeout: float) -> dict[str, Any]:
    run: dict[str, Any] = {}

    async def done() -> bool:
        _, found = await fleet.api.get(f"/api/executions/{execution_id}")
        run.update(found)
        return bool(found.get("status") not in (None, "running"))

    await wait_until(done, timeout, f"execution {execution_id} to finish", fleet.watched)
    return run


def check_once(events: list[tuple[str, dict[str, Any]]], devices: list[str]) -> None:
    """One start, one end, one success per device; no event lists more than PER_EVENT ids."""
    counts = Counter(kind for kind, _ in events)
    assert (counts["ExecutionStarted"], counts["ExecutionCompleted"]) == (1, 1), counts
    assert counts["ExecutionTargetsAdded"] == DEVICES // PER_EVENT - 1, counts
    listed = [len(data.get("device_ids", [])) for _, data in events]
    assert max(listed) <= PER_EVENT, listed
    results = Counter(data["device_id"] for kind, data in events if kind == "DeviceResultRecorded")
    assert results == Counter(devices), results
    statuses = {data["status"] for kind, data in events if kind == "DeviceResultRecorded"}
    assert statuses == {"success"}


async def test_a_run_with_more_targets_than_one_event_lists_records_every_result(
    small_events: Fleet, stack: Stack, simulated: SimulatedFleet
) -> None:
    fleet, devices = small_events, device_ids(DEVICES)
    fleet.executor()
    await wait_until(lambda: all_online(stack.pool), 60, "the simulated devices online", [])
    _, execution_id = await run_now(fleet.api, command_task("true", devices))

    run = await finished(fleet, execution_id, timeout=60)
    assert run["status"] == "success", run["error_message"]
    assert run["result"]["devices_targeted"] == DEVICES
    details = run["result"]["execution_details"]
    assert {device: details[device]["status"] for device in details} == dict.fromkeys(
        devices, "success"
    )
    check_once(await stream(stack.pool, execution_id), devices)
    assert simulated.stop()["executions"][execution_id]["jobs"] == DEVICES


async def test_a_run_whose_executor_is_killed_mid_fan_out_ends_once_with_every_result(
    small_events: Fleet, stack: Stack, simulated: SimulatedFleet
) -> None:
    fleet, devices = small_events, device_ids(DEVICES)
    executor = fleet.executor()
    await wait_until(lambda: all_online(stack.pool), 60, "the simulated devices online", [])
    _, execution_id = await run_now(fleet.api, command_task(sleep_command(3), devices))

    async def dispatching() -> bool:
        kinds = [kind for kind, _ in await stream(stack.pool, execution_id)]
        return "DeviceJobDispatched" in kinds

    await wait_until(dispatching, 30, "the first jobs to be dispatched", [executor])
    executor.kill9()
    events = await stream(stack.pool, execution_id)
    assert "ExecutionCompleted" not in [kind for kind, _ in events]
    killed_at = time.monotonic()
    fleet.executor(name="executor-command-2")

    run = await finished(fleet, execution_id, timeout=60)
    assert run["status"] == "success", run["error_message"]
    check_once(await stream(stack.pool, execution_id), devices)
    # Resent jobs were answered from the devices' journals: none ran its job twice.
    assert simulated.stop()["executions"][execution_id]["jobs"] == DEVICES
    print(f"\nthe second executor completed it {time.monotonic() - killed_at:.2f} s after the kill")
