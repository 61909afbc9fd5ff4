"""Tasks carried out on real agents: output, exit codes, timeouts, groups, files, software."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from tests.e2e.fleet import TASKS, Fleet, command_task, run_now
from tests.stack import Stack


async def test_a_command_reports_each_devices_output_and_exit_code(
    fleet: Fleet, stack: Stack
) -> None:
    executor = fleet.executor()
    fleet.agent("dev-a")
    fleet.agent("dev-b")
    await fleet.wait_online(["dev-a", "dev-b"])
    command = (
        'echo "hello from $DEPLOYX_DEVICE_ID"; echo oops >&2; [ "$DEPLOYX_DEVICE_ID" = dev-a ]'
    )

    task_id, execution_id = await run_now(
        fleet.api, command_task(command, ["dev-a", "dev-b", "dev-never-seen"])
    )
    execution = await fleet.finished(task_id, execution_id)

    details = execution["result"]["execution_details"]
    assert details["dev-a"] | {"error": None} == {
        "status": "success",
        "exit_code": 0,
        "stdout": "hello from dev-a\n",
        "stderr": "oops\n",
        "error": None,
    }
    assert (details["dev-b"]["status"], details["dev-b"]["exit_code"]) == ("failed", 1)
    assert details["dev-b"]["stdout"] == "hello from dev-b\n"
    assert details["dev-never-seen"]["status"] == "unreachable"
    assert "never connected" in details["dev-never-seen"]["error"]
    assert execution["status"] == "failed"
    assert execution["error_message"] == "2 of 3 devices did not succeed"
    counts = {k: execution["result"][k] for k in ("devices_targeted", "devices_succeeded")}
    assert counts == {"devices_targeted": 3, "devices_succeeded": 1}
    _, task = await fleet.api.get(f"{TASKS}/{task_id}")
    assert (task["execution_count"], task["last_execution_status"]) == (1, "failed")
    # The run's start and its first step (the jobs out, the device never seen) are one commit:
    # a burst of runs costs one write each to get going, not two.
    rows = await stack.pool.fetch(
        "SELECT type, tx_id = first_value(tx_id) OVER (ORDER BY version) AS with_start"
        " FROM events WHERE stream_id = $1 ORDER BY version",
        execution_id,
    )
    first = [row["type"] for row in rows if row["with_start"]]
    assert first == ["ExecutionStarted", "DeviceResultRecorded", "DeviceJobDispatched"], rows
    # Each job went out once (a resend, if any, is logged apart as jobs_resent).
    dispatched = [
        line["devices"]
        for line in executor.log_lines()
        if line.get("event") == "jobs_dispatched" and line.get("execution_id") == execution_id
    ]
    assert dispatched == [2]


async def test_a_command_past_its_timeout_is_stopped_and_reported(fleet: Fleet) -> None:
    fleet.executor()
    fleet.agent("dev-a")
    await fleet.wait_online(["dev-a"])

    task_id, execution_id = await run_now(
        fleet.api, command_task("echo started; sleep 30", ["dev-a"], timeout_seconds=1)
    )
    execution = await fleet.finished(task_id, execution_id, timeout=30)

    result = execution["result"]["execution_details"]["dev-a"]
    assert result["status"] == "timeout"
    assert result["stdout"] == "started\n"
    assert execution["status"] == "failed"


async def test_a_run_resolves_group_members_when_it_runs(fleet: Fleet) -> None:
    fleet.executor()
    fleet.agent("dev-a")
    fleet.agent("dev-b")
    await fleet.wait_online(["dev-a", "dev-b"])
    _, group = await fleet.api.post("/api/groups", {"name": "web", "device_ids": ["dev-a"]})
    body = command_task("true", []) | {"group_ids": [group["id"]]}
    status, task = await fleet.api.post(TASKS, body)
    assert status == 201, task

    await fleet.api.put(f"/api/groups/{group['id']}", {"device_ids": ["dev-b"]})
    _, accepted = await fleet.api.post(f"{TASKS}/{task['id']}/execute")
    execution = await fleet.finished(task["id"], accepted["execution_id"])

    assert list(execution["result"]["execution_details"]) == ["dev-b"]
    assert execution["status"] == "success"


async def test_a_run_with_no_target_fails_saying_so(fleet: Fleet) -> None:
    fleet.executor()

    task_id, execution_id = await run_now(fleet.api, command_task("true", []))
    execution = await fleet.finished(task_id, execution_id)

    assert execution["status"] == "failed"
    assert "no target devices" in execution["error_message"]


async def test_a_file_lands_byte_for_byte_with_its_mode(fleet: Fleet, tmp_path: Path) -> None:
    fleet.executor("file_deployment")
    fleet.agent("dev-a")
    await fleet.wait_online(["dev-a"])
    content = os.urandom(3 * 1024 * 1024 + 17)
    status, stored = await fleet.api.post(
        "/api/files?name=app.bin",
        data=io.BytesIO(content),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert status == 201, stored
    assert stored["size"] == len(content)
    destination = tmp_path / "deployed" / "etc" / "app.bin"

    task_id, execution_id = await run_now(
        fleet.api,
        {
            "name": "ship app.bin",
            "task_type": "file_deployment",
            "recurrence_type": "daily",
            "recurrence_config": {"time": "03:00"},
            "device_ids": ["dev-a"],
            "task_payload": {
                "file_payload": {
                    "file_id": stored["file_id"],
                    "destination": str(destination),
                    "mode": "0640",
                }
            },
        },
    )
    execution = await fleet.finished(task_id, execution_id)

    assert execution["status"] == "success", execution
    assert destination.read_bytes() == content
    assert stat.S_IMODE(destination.stat().st_mode) == 0o640


async def test_software_installs_through_a_driver_the_test_provides(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.executor("software_deployment")
    fleet.agent("dev-a", "--driver-module", "tests.e2e.fake_driver")
    await fleet.wait_online(["dev-a"])
    (tmp_path / "packages").mkdir()

    task_id, execution_id = await run_now(
        fleet.api,
        {
            "name": "install nginx",
            "task_type": "software_deployment",
            "recurrence_type": "daily",
            "recurrence_config": {"time": "03:00"},
            "device_ids": ["dev-a"],
            "task_payload": {
                "software_payload": {"package": "nginx", "version": "1.24.0", "manager": "fake"}
            },
        },
    )
    execution = await fleet.finished(task_id, execution_id)

    assert execution["status"] == "success", execution
    assert (tmp_path / "packages" / "nginx").read_text() == "1.24.0"
