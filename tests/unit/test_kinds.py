"""The registries of task kinds and recurrence kinds: what the API offers and validates, what the
file server grants and what the agent runs all come from them."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import msgspec
import nats.aio.client
import pytest

from services.agent.dispatch import JobContext, execute, load_runners
from services.agent.protocol import Job
from services.api.openapi import openapi_document
from services.domain.errors import ValidationFailed
from services.domain.kinds import KINDS, TASK_TYPES, file_id_of, kind_of, stored_payload
from services.domain.recurrence import RECURRENCE_KINDS, RECURRENCE_TYPES, parse_schedule
from services.domain.task_spec import TaskInput, canonical_payload, from_msgspec_error

# The smallest payload of each kind a user may send.
MINIMAL: dict[str, dict[str, Any]] = {
    "command": {"command": "uptime"},
    "software_deployment": {"package": "nginx"},
    "file_deployment": {"file_id": "f-1", "destination": "/etc/app.conf"},
    "script": {"file_id": "s-1"},
}


def test_the_kinds_are_the_contracts_and_script() -> None:
    assert TASK_TYPES == ("command", "software_deployment", "file_deployment", "script")
    assert set(MINIMAL) == set(KINDS)
    assert [kind.payload_key for kind in KINDS.values()] == [
        "command_payload",
        "software_payload",
        "file_payload",
        "script_payload",
    ]


def test_every_kind_and_recurrence_kind_is_in_the_openapi_enums() -> None:
    document = openapi_document()
    schemas = document["components"]["schemas"]
    assert sorted(schemas["TaskInput"]["properties"]["task_type"]["enum"]) == sorted(TASK_TYPES)
    listing = document["paths"]["/api/schedule/tasks"]["get"]["parameters"]
    [task_type] = [parameter for parameter in listing if parameter["name"] == "task_type"]
    assert task_type["schema"]["enum"] == list(TASK_TYPES)
    for body in ("TaskInput", "TaskPatch", "PreviewRequest"):
        enum = schemas[body]["properties"]["recurrence_type"]["enum"]
        assert sorted(enum) == sorted(RECURRENCE_TYPES)
    assert tuple(RECURRENCE_KINDS) == RECURRENCE_TYPES


def test_openapi_shows_each_kinds_payload_under_its_key() -> None:
    schemas = openapi_document()["components"]["schemas"]
    for body in ("TaskInput", "TaskPatch"):
        shapes = schemas[body]["properties"]["task_payload"]["oneOf"]
        assert [list(shape["properties"]) for shape in shapes] == [
            [kind.payload_key] for kind in KINDS.values()
        ]
    script = schemas["ScriptPayload"]
    assert script["required"] == ["file_id"]
    assert script["properties"]["args"]["maxItems"] == 256
    assert script["properties"]["timeout_seconds"]["default"] == 300


def test_an_unknown_kind_is_refused_naming_task_type() -> None:
    body = {"name": "x", "task_type": "shell_script", "recurrence_type": "daily"}
    with pytest.raises(msgspec.ValidationError) as decoding:
        msgspec.convert(body, TaskInput)
    assert from_msgspec_error(decoding.value).field == "task_type"
    with pytest.raises(ValidationFailed) as refused:
        canonical_payload("shell_script", {"command_payload": {"command": "true"}})
    assert refused.value.field == "task_type"
    assert refused.value.message == (
        "task_type: must be one of command, software_deployment, file_deployment, script"
    )


def test_an_unknown_recurrence_kind_is_refused_naming_recurrence_type() -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_schedule("hourly", {})
    assert refused.value.field == "recurrence_type"
    assert "must be one of once, daily, weekly, monthly, custom, interval" in refused.value.message


@pytest.mark.parametrize("task_type", list(MINIMAL))
def test_each_kind_fills_its_defaults_from_its_struct(task_type: str) -> None:
    kind = kind_of(task_type)
    canonical = canonical_payload(task_type, {kind.payload_key: MINIMAL[task_type]})
    expected = msgspec.to_builtins(kind.payload_type(**MINIMAL[task_type]))
    assert canonical == {kind.payload_key: expected}
    stored = stored_payload(task_type, canonical)
    assert isinstance(stored, kind.payload_type)
    assert stored.timeout_seconds == expected["timeout_seconds"] > 0


def test_a_payload_of_another_kind_is_refused_naming_it() -> None:
    with pytest.raises(ValidationFailed) as refused:
        canonical_payload("script", {"file_payload": MINIMAL["file_deployment"]})
    assert refused.value.field == "task_payload.file_payload"
    assert refused.value.message.endswith("not allowed for a script task")


def test_the_file_server_grants_the_upload_a_kind_names() -> None:
    assert file_id_of("file_deployment", {"file_payload": MINIMAL["file_deployment"]}) == "f-1"
    assert file_id_of("script", {"script_payload": MINIMAL["script"]}) == "s-1"
    assert file_id_of("command", {"command_payload": {"command": "cat f-1"}}) is None
    assert file_id_of("no_such_kind", {"script_payload": MINIMAL["script"]}) is None


def test_the_agent_has_a_runner_for_every_kind() -> None:
    runners = load_runners()
    assert set(runners) == set(KINDS)
    for name, runner in runners.items():
        assert inspect.iscoroutinefunction(runner), name
        assert runner.__module__ == KINDS[name].agent_module


def job(task_type: str, payload: bytes) -> Job:
    return Job(
        job_id="e:dev",
        execution_id="e",
        task_id="t",
        task_type=task_type,
        payload=msgspec.Raw(payload),
        timeout_seconds=5,
    )


async def test_the_agent_answers_a_job_it_cannot_run_or_read(tmp_path: Path) -> None:
    unconnected = nats.aio.client.Client()  # neither job gets as far as using it
    runners = load_runners()

    def context(of: Job) -> JobContext:
        return JobContext(
            job=of, device_id="dev", client=unconnected, state_dir=tmp_path, allow_roots=[]
        )

    unknown = job("cron_job", b"{}")
    outcome = await execute(unknown, context(unknown), runners)
    assert (outcome.status, outcome.error) == ("failed", "this agent cannot run cron_job jobs")

    unreadable = job("command", b'{"command": "true", "shell": "fish"}')
    outcome = await execute(unreadable, context(unreadable), runners)
    assert outcome.status == "failed"
    assert outcome.error == (
        "this agent cannot read the command payload: Invalid enum value 'fish' - at `$.shell`"
    )


async def test_the_agent_runs_a_typed_payload_with_its_defaults(tmp_path: Path) -> None:
    unconnected = nats.aio.client.Client()
    command = job("command", b'{"command": "echo \\"$DEPLOYX_DEVICE_ID\\" in $0"}')
    context = JobContext(
        job=command, device_id="dev", client=unconnected, state_dir=tmp_path, allow_roots=[]
    )
    outcome = await execute(command, context, load_runners())
    assert (outcome.status, outcome.stdout) == ("success", "dev in bash\n")
