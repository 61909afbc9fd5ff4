"""Crashes mid-execution, with real executors and agents: kill -9 an executor, kill -9 an agent,
forge a result; each device still runs its job at most once and each execution completes once
(DESIGN.md problems 5 and 6)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import pytest

from services.agent.protocol import JobReport, results_subject
from services.executor.run import job_id
from tests.e2e.fleet import Fleet, command_task, run_now
from tests.e2e.processes import wait_until
from tests.stack import Stack

pytestmark = pytest.mark.e2e

# A TaskDue its executor died holding is redelivered after the consumer's ack wait: 60 s by
# default, 3 s here so that a test of it takes seconds rather than a minute.
ACK_WAIT_SECONDS = 3
INTERRUPTED = "the agent stopped while this job ran; it is not run a second time"


@pytest.fixture
def crash_fleet(fleet: Fleet) -> Fleet:
    """The fleet, its executors created with a short ack wait."""
    fleet.services.env["DEPLOYX_EXECUTOR_ACK_WAIT"] = str(ACK_WAIT_SECONDS)
    return fleet


async def execution_events(pool: asyncpg.Pool, execution_id: str) -> list[tuple[str, Any]]:
    """The execution's stream, in order: (event type, its data)."""
    rows = await pool.fetch(
        "SELECT type, data::text FROM events WHERE stream_id = $1 ORDER BY version", execution_id
    )
    return [(row["type"], json.loads(row["data"])) for row in rows]


async def has_event(pool: asyncpg.Pool, execution_id: str, event_type: str) -> bool:
    return any(kind == event_type for kind, _ in await execution_events(pool, execution_id))


def results_by_device(events: list[tuple[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for kind, data in events:
        if kind == "DeviceResultRecorded":
            found.setdefault(data["device_id"], []).append(data)
    return found


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def _true(value: bool) -> bool:
    return value


async def test_a_killed_executors_run_is_resumed_and_no_device_runs_its_job_twice(
    crash_fleet: Fleet, stack: Stack, tmp_path: Path
) -> None:
    fleet, runs = crash_fleet, tmp_path / "runs"
    runs.mkdir()
    executor = fleet.executor()
    agents = {device: fleet.agent(device) for device in ("dev-a", "dev-b")}
    await fleet.wait_online(list(agents))
    # dev-a is done before the TaskDue comes back (its journal answers with the stored result);
    # dev-b most likely still runs then (it answers "accepted", then reports when it is done).
    command = (
        f'echo run >> {runs}/"$DEPLOYX_DEVICE_ID"; '
        'if [ "$DEPLOYX_DEVICE_ID" = dev-b ]; then sleep 6; else sleep 1; fi'
    )

    task_id, execution_id = await run_now(fleet.api, command_task(command, list(agents)))
    await wait_until(
        lambda: _true(all((runs / device).exists() for device in agents)),
        20,
        "both devices to start the job",
        fleet.watched,
    )
    executor.kill9()
    killed_at = time.monotonic()
    assert not await has_event(stack.pool, execution_id, "ExecutionCompleted")
    await agents["dev-a"].wait_for_log("job_finished")
    fleet.executor(name="executor-command-2")
    execution = await fleet.finished(task_id, execution_id, timeout=25)
    recovered_in = time.monotonic() - killed_at

    events = await execution_events(stack.pool, execution_id)
    counts = Counter(kind for kind, _ in events)
    assert (counts["ExecutionStarted"], counts["ExecutionCompleted"]) == (1, 1), events
    results = results_by_device(events)
    assert {device: [r["status"] for r in found] for device, found in results.items()} == {
        "dev-a": ["success"],
        "dev-b": ["success"],
    }
    completed = next(data for kind, data in events if kind == "ExecutionCompleted")
    assert (completed["status"], completed["devices_succeeded"]) == ("success", 2)
    assert execution["status"] == "success"
    for device in agents:
        assert lines(runs / device) == ["run"], f"{device} ran the job more than once"
    print(f"\nthe second executor completed the execution {recovered_in:.2f} s after the kill")


async def test_an_agent_killed_mid_job_reports_it_failed_and_never_runs_it_again(
    fleet: Fleet, stack: Stack, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    fleet.executor()
    agents = {device: fleet.agent(device) for device in ("dev-a", "dev-b")}
    await fleet.wait_online(list(agents))
    log = f'{runs}/"$DEPLOYX_DEVICE_ID"'
    command = f"echo start >> {log}; sleep 2; echo done >> {log}"

    task_id, execution_id = await run_now(fleet.api, command_task(command, list(agents)))
    await wait_until(
        lambda: _true("start" in lines(runs / "dev-a")),
        20,
        "dev-a to start the job",
        fleet.watched,
    )
    agents["dev-a"].kill9()
    killed_at = time.monotonic()
    fleet.agent("dev-a")  # the same --state-dir: its journal survived
    await agents["dev-a"].wait_for_log("agent_ready")
    execution = await fleet.finished(task_id, execution_id, timeout=20)
    finished_in = time.monotonic() - killed_at

    events = await execution_events(stack.pool, execution_id)
    assert Counter(kind for kind, _ in events)["ExecutionCompleted"] == 1, events
    results = results_by_device(events)
    assert sorted(results) == ["dev-a", "dev-b"]
    assert [len(found) for found in results.values()] == [1, 1], results
    (interrupted,), (other,) = results["dev-a"], results["dev-b"]
    assert (interrupted["status"], interrupted["error"]) == ("failed", INTERRUPTED), interrupted
    assert other["status"] == "success", other
    assert execution["status"] == "failed"
    assert execution["error_message"] == "1 of 2 devices did not succeed"
    # The killed agent's command runs in a session of its own and may still write "done".
    assert lines(runs / "dev-a").count("start") == 1, "dev-a ran the job again after its restart"
    assert lines(runs / "dev-b") == ["start", "done"]
    print(f"\nthe execution finished {finished_in:.2f} s after the agent's kill")


async def test_a_result_sent_on_another_devices_subject_is_rejected(
    fleet: Fleet, stack: Stack, nats_url: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    executor = fleet.executor()
    fleet.agent("dev-a")
    await fleet.wait_online(["dev-a"])
    command = (
        f'echo started >> {runs}/"$DEPLOYX_DEVICE_ID"; '
        'echo "real output of $DEPLOYX_DEVICE_ID"; sleep 2; exit 3'
    )

    task_id, execution_id = await run_now(fleet.api, command_task(command, ["dev-a"]))
    await wait_until(
        lambda: _true((runs / "dev-a").exists()), 20, "dev-a to start the job", fleet.watched
    )
    # A rogue dev-b speaks for dev-a's job while it still runs. NATS permissions would keep it
    # to its own subjects; it cannot be kept from those.
    forged = JobReport(
        job_id=job_id(execution_id, "dev-a"),
        state="finished",
        status="success",
        exit_code=0,
        stdout="forged by dev-b\n",
    )
    rogue = await nats.connect(nats_url)
    try:
        await rogue.publish(results_subject("dev-b"), msgspec.json.encode(forged))
        await rogue.flush()
    finally:
        await rogue.close()
    rejected: list[dict[str, Any]] = []

    async def seen_by_admin() -> bool:
        _, page = await fleet.api.get("/api/admin/rejected-messages?device_id=dev-b")
        rejected[:] = page["items"]
        return bool(rejected)

    await wait_until(seen_by_admin, 10, "the forged result to be refused", [executor])
    execution = await fleet.finished(task_id, execution_id, timeout=20)

    results = results_by_device(await execution_events(stack.pool, execution_id))
    assert list(results) == ["dev-a"]
    (result,) = results["dev-a"]
    assert (result["status"], result["exit_code"], result["stdout"]) == (
        "failed",
        3,
        "real output of dev-a\n",
    ), result
    assert execution["status"] == "failed"
    assert [(r["source"], r["reason"], r["count"]) for r in rejected] == [
        ("result", "a result for another device's job", 1)
    ]
    assert "forged by dev-b" in rejected[0]["sample"]
