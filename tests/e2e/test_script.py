"""Script tasks end to end: an uploaded script runs on real agents with its arguments and
environment through `deployx executor --type script`, under events of the category `script`."""

from __future__ import annotations

import io
from typing import Any

import msgspec
import nats
import nats.aio.msg

from tests.e2e.api import assert_error
from tests.e2e.fleet import Fleet, run_now
from tests.stack import Client

SCRIPT = b"""#!/bin/sh
echo "$GREETING from $DEPLOYX_DEVICE_ID:" "$@"
echo "to stderr" >&2
[ "$DEPLOYX_DEVICE_ID" = dev-a ] || exit 4
"""


def script_task(file_id: str, device_ids: list[str], **payload: Any) -> dict[str, Any]:
    return {
        "name": "greet",
        "task_type": "script",
        "recurrence_type": "daily",
        "recurrence_config": {"time": "03:00"},
        "device_ids": device_ids,
        "task_payload": {"script_payload": {"file_id": file_id, **payload}},
    }


async def upload(api: Client, name: str, content: bytes) -> str:
    status, stored = await api.post(
        f"/api/files?name={name}",
        data=io.BytesIO(content),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert status == 201, stored
    return str(stored["file_id"])


async def test_an_uploaded_script_runs_with_its_args_and_env_and_reports_each_device(
    fleet: Fleet, nats_url: str
) -> None:
    fleet.executor("script")
    fleet.agent("dev-a")
    fleet.agent("dev-b")
    await fleet.wait_online(["dev-a", "dev-b"])
    file_id = await upload(fleet.api, "greet.sh", SCRIPT)
    watcher = await nats.connect(nats_url)
    published: list[str] = []

    async def on_event(msg: nats.aio.msg.Msg) -> None:
        published.append(msg.subject)

    await watcher.subscribe("deployx.events.script.>", cb=on_event)
    await watcher.flush()
    await watcher.flush()  # nats-py 2.16: the first PING may overtake the SUB
    try:
        body = script_task(
            file_id, ["dev-a", "dev-b"], args=["one", "two words"], env={"GREETING": "hello"}
        )
        task_id, execution_id = await run_now(fleet.api, body)
        execution = await fleet.finished(task_id, execution_id)
    finally:
        await watcher.drain()

    details = execution["result"]["execution_details"]
    assert details["dev-a"] == {
        "status": "success",
        "exit_code": 0,
        "stdout": "hello from dev-a: one two words\n",
        "stderr": "to stderr\n",
        "error": None,
    }
    assert details["dev-b"] == {
        "status": "failed",
        "exit_code": 4,
        "stdout": "hello from dev-b: one two words\n",
        "stderr": "to stderr\n",
        "error": "exited with code 4",
    }
    assert execution["status"] == "failed"
    prefix = "deployx.events.script."
    assert {f"{prefix}TaskCreated", f"{prefix}TaskDue", f"{prefix}ExecutionCompleted"} <= set(
        published
    )
    _, task = await fleet.api.get(f"/api/schedule/tasks/{task_id}")
    assert task["task_payload"]["script_payload"] == {
        "file_id": file_id,
        "args": ["one", "two words"],
        "env": {"GREETING": "hello"},
        "interpreter": None,
        "timeout_seconds": 300,
        "working_dir": None,
    }


async def test_a_bad_script_payload_is_422_naming_the_field(operator: Client) -> None:
    cases: dict[str, dict[str, Any]] = {
        "task_payload.script_payload.args": {"args": ["x"] * 257},
        "task_payload.script_payload.args.1": {"args": ["ok", "nul\u0000"]},
        "task_payload.script_payload.env": {"env": {"NOT-A-NAME": "x"}},
        "task_payload.script_payload.interpreter": {"interpreter": "ruby"},
    }
    for field, payload in cases.items():
        response = await operator.post(
            "/api/schedule/tasks", script_task("a1b2", ["dev-a"], **payload)
        )
        error = assert_error(response, 422)
        assert msgspec.convert(error["details"], dict[str, str])["field"] == field, error
    response = await operator.get("/api/schedule/tasks?task_type=script")
    assert response == (200, {"items": [], "total": 0})
