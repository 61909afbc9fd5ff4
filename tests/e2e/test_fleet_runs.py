"""Fleet-safe runs with real agents (issue 11): ad-hoc runs, waves, the error budget, offline
devices that connect later, cancel that leaves no process behind, rerun of failed devices, and
a device that falls silent mid-job."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.fleet import TASKS, Fleet
from tests.e2e.processes import wait_until
from tests.stack import Client, Stack

pytestmark = pytest.mark.e2e

FAIL_ON_B = '[ "$DEPLOYX_DEVICE_ID" = dev-b ] && exit 1; echo ok'


def adhoc(command: str, devices: list[str], **delivery: Any) -> dict[str, Any]:
    return {
        "name": "by hand",
        "task_type": "command",
        "device_ids": devices,
        "task_payload": {"command_payload": {"command": command, "timeout_seconds": 60}},
        "delivery": delivery,
    }


async def start(api: Client, body: dict[str, Any]) -> str:
    status, accepted = await api.post("/api/executions", body)
    assert status == 202, accepted
    return str(accepted["execution_id"])


async def finished(fleet: Fleet, execution_id: str, timeout: float = 60) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def done() -> bool:
        status, run = await fleet.api.get(f"/api/executions/{execution_id}")
        assert status == 200, run
        found.update(run)
        return bool(run["status"] != "running")

    await wait_until(done, timeout, f"run {execution_id} to end", fleet.watched)
    return found


def statuses(run: dict[str, Any]) -> dict[str, str]:
    return {d: r["status"] for d, r in run["result"]["execution_details"].items()}


async def test_an_adhoc_run_is_a_run_with_no_task_seen_by_its_requester_only(
    fleet: Fleet, stack: Any
) -> None:
    fleet.executor()
    fleet.agent("dev-a")
    await fleet.wait_online(["dev-a"])
    execution_id = await start(fleet.api, adhoc("echo hi", ["dev-a"]))
    run = await finished(fleet, execution_id)

    assert (run["status"], run["trigger"], run["task_id"], run["name"]) == (
        "success",
        "adhoc",
        None,
        "by hand",
    )
    assert run["result"]["execution_details"]["dev-a"]["stdout"] == "hi\n"
    _, tasks = await fleet.api.get(TASKS)
    assert tasks["total"] == 0  # it created no task
    stranger = await stack.client("stranger", "operator")
    assert (await stranger.get(f"/api/executions/{execution_id}"))[0] == 404
    _, theirs = await stranger.get("/api/executions?trigger=adhoc")
    assert theirs["total"] == 0
    status, refused = await fleet.api.post("/api/executions", adhoc("true", []))
    assert (status, refused["error"]["details"]["field"]) == (422, "device_ids")
    status, refused = await fleet.api.post(
        "/api/executions", adhoc("true", ["dev-a"], max_concurrency=0)
    )
    assert (status, refused["error"]["details"]["field"]) == (422, "delivery.max_concurrency")


async def test_waves_run_one_after_another(fleet: Fleet) -> None:
    fleet.executor()
    devices = ["dev-a", "dev-b", "dev-c"]
    for device in devices:
        fleet.agent(device)
    await fleet.wait_online(devices)
    stamp = "python3 -c 'import time; print(time.time())'; sleep 1"

    run = await finished(fleet, await start(fleet.api, adhoc(stamp, devices, waves=[1])))

    assert run["status"] == "success", run
    started = [float(run["result"]["execution_details"][d]["stdout"]) for d in devices]
    # Each wave starts only once the one before (a second's work) has finished.
    assert started[1] - started[0] >= 1.0
    assert started[2] - started[1] >= 1.0


async def test_past_max_errors_the_rest_is_skipped(fleet: Fleet) -> None:
    fleet.executor()
    devices = ["dev-a", "dev-b", "dev-c"]
    for device in devices:
        fleet.agent(device)
    await fleet.wait_online(devices)

    body = adhoc("exit 3", devices, waves=[1], max_errors=0)
    run = await finished(fleet, await start(fleet.api, body))

    assert run["status"] == "failed"
    assert statuses(run) == {"dev-a": "failed", "dev-b": "skipped", "dev-c": "skipped"}
    assert run["error_message"] == (
        "stopped after 1 of 3 devices failed (more than max_errors 0); 2 not started"
    )


async def test_an_offline_device_gets_its_job_when_it_connects(fleet: Fleet) -> None:
    fleet.executor()
    fleet.agent("dev-a")
    await fleet.wait_online(["dev-a"])
    body = adhoc("echo late", ["dev-a", "dev-late"], offline_wait_seconds=120)
    execution_id = await start(fleet.api, body)

    async def waiting() -> bool:
        _, run = await fleet.api.get(f"/api/executions/{execution_id}")
        return statuses(run) == {"dev-a": "success", "dev-late": "waiting"}

    await wait_until(waiting, 30, "dev-late to wait", fleet.watched)
    fleet.agent("dev-late")  # the laptop opens
    run = await finished(fleet, execution_id)
    assert statuses(run) == {"dev-a": "success", "dev-late": "success"}
    assert run["result"]["execution_details"]["dev-late"]["stdout"] == "late\n"


async def test_cancel_ends_the_whole_process_tree_and_the_run(fleet: Fleet, tmp_path: Path) -> None:
    fleet.executor()
    fleet.agent("dev-a")
    await fleet.wait_online(["dev-a"])
    pids = tmp_path / "pids"
    # A child in the background and the shell itself: both must go.
    command = f"sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; wait"
    execution_id = await start(fleet.api, adhoc(command, ["dev-a"]))
    await wait_until(
        lambda: _true(pids.exists() and len(pids.read_text().split()) == 2),
        20,
        "the job to start",
        fleet.watched,
    )

    status, canceling = await fleet.api.post(f"/api/executions/{execution_id}/cancel")
    assert status == 202, canceling
    run = await finished(fleet, execution_id, timeout=20)

    assert run["status"] == "canceled"
    assert statuses(run) == {"dev-a": "canceled"}
    for pid in (int(p) for p in pids.read_text().split()):
        assert not _alive(pid), f"process {pid} is still there"
    status, again = await fleet.api.post(f"/api/executions/{execution_id}/cancel")
    assert status == 409, again


async def test_a_cancel_recorded_while_no_executor_runs_takes_effect_when_it_is_back(
    fleet: Fleet, stack: Stack, tmp_path: Path
) -> None:
    # A TaskDue (here an ExecutionRequested) its executor died holding comes back after the
    # consumer's ack wait: 3 s here rather than a minute.
    fleet.services.env["DEPLOYX_EXECUTOR_ACK_WAIT"] = "3"
    executor = fleet.executor()
    devices = ["dev-a", "dev-b"]
    for device in devices:
        fleet.agent(device)
    await fleet.wait_online(devices)
    pids, started = tmp_path / "pids", tmp_path / "started"
    started.mkdir()
    # One device at a time: dev-b's turn comes only once dev-a's job ends, which it never does.
    command = (
        f'touch {started}/"$DEPLOYX_DEVICE_ID"; '
        f"sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; wait"
    )
    execution_id = await start(fleet.api, adhoc(command, devices, waves=[1]))

    async def dev_a_runs() -> bool:
        _, run = await fleet.api.get(f"/api/executions/{execution_id}")
        ready = pids.exists() and len(pids.read_text().split()) == 2
        return ready and statuses(run) == {"dev-a": "running", "dev-b": "pending"}

    await wait_until(dev_a_runs, 20, "dev-a to run the job", fleet.watched)
    executor.kill9()  # no executor runs now

    status, canceling = await fleet.api.post(
        f"/api/executions/{execution_id}/cancel", {"reason": "wrong command"}
    )
    assert status == 202, canceling
    _, run = await fleet.api.get(f"/api/executions/{execution_id}")
    assert (run["status"], bool(run["cancel_requested_at"])) == ("running", True), run
    job = [int(p) for p in pids.read_text().split()]
    assert all(_alive(pid) for pid in job), "the job ended with no executor to cancel it"

    executor.start()
    run = await finished(fleet, execution_id, timeout=40)

    assert (run["status"], run["error_message"]) == ("canceled", "canceled: wrong command"), run
    assert statuses(run) == {"dev-a": "canceled", "dev-b": "canceled"}
    assert run["result"]["execution_details"]["dev-b"]["error"] == "canceled before it started"
    assert sorted(p.name for p in started.iterdir()) == ["dev-a"], "dev-b started after all"
    dispatched = await stack.pool.fetch(
        "SELECT data -> 'device_ids' AS devices FROM events "
        "WHERE stream_id = $1 AND type = 'DeviceJobDispatched'",
        execution_id,
    )
    assert [json.loads(row["devices"]) for row in dispatched] == [["dev-a"]]
    for pid in job:
        assert not _alive(pid), f"process {pid} of the canceled job is still there"


async def test_rerun_of_the_failed_devices_links_both_runs(fleet: Fleet) -> None:
    fleet.executor()
    devices = ["dev-a", "dev-b"]
    for device in devices:
        fleet.agent(device)
    await fleet.wait_online(devices)
    first = await finished(fleet, await start(fleet.api, adhoc(FAIL_ON_B, devices)))
    assert statuses(first) == {"dev-a": "success", "dev-b": "failed"}

    status, accepted = await fleet.api.post(
        f"/api/executions/{first['id']}/rerun", {"devices": "failed"}
    )
    assert status == 202, accepted
    again = await finished(fleet, accepted["execution_id"])
    assert (again["trigger"], again["rerun_of"]) == ("rerun", first["id"])
    assert statuses(again) == {"dev-b": "failed"}
    _, reruns = await fleet.api.get("/api/executions?trigger=rerun")
    assert [run["id"] for run in reruns["items"]] == [again["id"]]

    status, refused = await fleet.api.post(
        f"/api/executions/{first['id']}/rerun", {"devices": ["dev-z"]}
    )
    assert (status, refused["error"]["details"]["field"]) == (422, "devices")
    ok = await finished(fleet, await start(fleet.api, adhoc("true", ["dev-a"])))
    status, refused = await fleet.api.post(
        f"/api/executions/{ok['id']}/rerun", {"devices": "failed"}
    )
    assert (status, refused["error"]["details"]["field"]) == (422, "devices")


async def test_a_device_silent_mid_job_ends_expired_not_running_forever(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.executor()
    agent = fleet.agent("dev-a")
    await fleet.wait_online(["dev-a"])
    started = tmp_path / "started"
    execution_id = await start(fleet.api, adhoc(f"touch {started}; sleep 30", ["dev-a"]))

    async def running() -> bool:
        # The agent took the job (its process runs), and the run shows the device running.
        _, run = await fleet.api.get(f"/api/executions/{execution_id}")
        return started.exists() and statuses(run) == {"dev-a": "running"}

    await wait_until(running, 20, "the job to run", fleet.watched)
    agent.pause()  # the laptop sleeps mid-job
    try:
        run = await finished(fleet, execution_id, timeout=40)
    finally:
        agent.resume()
    assert statuses(run) == {"dev-a": "expired"}
    assert "went silent" in run["result"]["execution_details"]["dev-a"]["error"]


async def _true(value: bool) -> bool:
    return value


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped by its parent) no longer runs anything.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_an_unknown_delivery_field_is_refused_by_name(fleet: Fleet) -> None:
    body = adhoc("true", ["dev-a"]) | {"delivery": {"max_concurency": 2}}
    status, refused = await fleet.api.post("/api/executions", body)
    assert status == 422, refused
    assert "max_concurency" in refused["error"]["message"]
