"""The HTTP API fuzzed from its own OpenAPI document with schemathesis: no 5xx, every response
as the document describes it, and the stored state intact afterwards.

Every operation of GET /api/openapi.json gets generated requests, valid and invalid ones, sent
with an admin token to a real API on a fresh database. Path parameters often name tasks and
groups that exist, and task and preview bodies often carry a valid recurrence and payload (the
document can only call those "an object"), so that the writes get past validation and store
whatever else was generated. Hypothesis runs derandomized (the same cases every run) and
bounded, for CI. The requests that once broke the API are sent first, every run.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import hypothesis
import msgspec
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, CheckFunction, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from events.codec import RecordedEvent
from projections.device_views import GroupPage
from projections.stats import Stats
from projections.task_views import Task, TaskPage
from services.domain.kinds import TASK_TYPES
from services.engine.replay import rebuild
from services.infra.store import LogCursor, read_after
from tests.e2e.api import GROUPS, TASKS, command_task, create_task, software_task
from tests.stack import Client, Stack

T = TypeVar("T")
Operation = APIOperation[Any, Any, Any, Any]
AnyCase = Case[Any]
MAX_EXAMPLES = 40
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,  # an invalid request must get a 4xx
]
# The test sends the admin token itself: generated (or left out) Authorization headers would
# only ever meet the 401 of the middleware.
CONFIG = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
# Operations that remove what the others name run last, so that the others meet existing ids.
LAST = ("DELETE /api/schedule/tasks/{id}", "DELETE /api/groups/{id}", "DELETE /api/webhooks/{id}")
# The bodies whose free-form objects (recurrence_config, task_payload) get valid ones at times.
WITH_RECURRENCE = (
    "POST /api/schedule/tasks",
    "PUT /api/schedule/tasks/{id}",
    "POST /api/schedule/preview",
)
RECURRENCES: list[tuple[str, dict[str, Any]]] = [
    ("once", {"run_at": "2100-01-01T00:00:00+01:00"}),
    ("daily", {"time": "03:00"}),
    ("weekly", {"time": "09:30", "days": [1, 3, 5], "timezone": "Europe/Berlin"}),
    ("monthly", {"time": "12:00", "day_of_month": 31, "timezone": "Australia/Lord_Howe"}),
    ("custom", {"cron": "0 8,12,18 * * 1-5", "timezone": "America/New_York"}),
    ("interval", {"every_seconds": 300}),
]
PAYLOADS: dict[str, dict[str, Any]] = {
    "command": {"command_payload": {"command": "uptime", "env": {"LANG": "C"}}},
    "software_deployment": {"software_payload": {"package": "nginx", "action": "upgrade"}},
    "file_deployment": {"file_payload": {"file_id": "f-1", "destination": "/etc/app.conf"}},
    "script": {"script_payload": {"file_id": "f-1", "args": ["--check"], "interpreter": "sh"}},
}


class Seeds(msgspec.Struct):
    """Ids that exist when fuzzing starts, fed to the path parameters and bodies."""

    task_ids: list[str]
    group_ids: list[int]
    webhook_ids: list[str] = []


class Outcome(msgspec.Struct):
    failures: list[str]
    sent: int


async def test_the_api_survives_its_own_document(stack: Stack, database_url: str) -> None:
    admin = await stack.client("fuzz-admin", "admin")
    seeds = await _seed(admin)
    assert admin.token is not None
    outcome = await asyncio.to_thread(_fuzz, stack.base_url, admin.token, seeds)
    assert not outcome.failures, f"{len(outcome.failures)} operations failed:\n\n" + "\n\n".join(
        outcome.failures
    )
    # Hypothesis stops early on an operation with few distinct requests (a bare GET), so fewer
    # than max_examples per operation; this many say the fuzzing did run.
    assert outcome.sent > 10 * MAX_EXAMPLES, outcome.sent
    await _assert_state_intact(stack, admin, database_url)


async def _seed(admin: Client) -> Seeds:
    group_ids: list[int] = []
    for name in ("fuzz-a", "fuzz-b", "fuzz-c"):
        status, group = await admin.post(GROUPS, {"name": name, "device_ids": ["local-1"]})
        assert status == 201, group
        group_ids.append(group["id"])
    tasks = [
        await create_task(admin, command_task(group_ids=group_ids[:1])),
        await create_task(admin, software_task()),
        await create_task(admin, command_task(name="paused")),
        await create_task(admin, command_task(name="to delete")),
    ]
    status, paused = await admin.post(f"{TASKS}/{tasks[2]['id']}/pause")
    assert status == 200, paused
    # No sender runs beside this API: nothing is ever sent to these (loopback) URLs.
    hook = {"url": "http://127.0.0.1:9/fuzz", "secret": "fuzz-secret-0123456789"}
    webhook_ids = []
    for types in (["TaskCreated"], ["TaskPaused", "ExecutionCompleted"]):
        status, webhook = await admin.post("/api/webhooks", hook | {"event_types": types})
        assert status == 201, webhook
        webhook_ids.append(webhook["id"])
    assert (await admin.post(f"/api/webhooks/{webhook_ids[0]}/test"))[0] == 202
    return Seeds(
        task_ids=[task["id"] for task in tasks], group_ids=group_ids, webhook_ids=webhook_ids
    )


def _fuzz(base_url: str, token: str, seeds: Seeds) -> Outcome:
    """Sends the regressions, then every operation's cases. Runs in a worker thread, since
    schemathesis sends with `requests` and the API serves on the test's event loop."""
    auth = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_url(
        f"{base_url}/api/openapi.json", config=CONFIG, headers=auth
    )
    outcome = Outcome(failures=[], sent=0)
    for label, case_fields, sent_as in _regressions(seeds):
        operation = schema.find_operation_by_label(label)
        assert operation is not None, f"the document lost {label}"
        case = operation.Case(**case_fields)
        headers = auth | sent_as.get("headers", {})
        body = {"data": sent_as["data"]} if "data" in sent_as else {}
        try:
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, **body)
        except (Exception, BaseExceptionGroup) as exc:
            outcome.failures.append(f"regression {label} {case_fields} {sent_as}: {exc}")
        outcome.sent += 1

    operations: list[Operation] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            outcome.failures.append(f"an operation of the document does not load: {result.err()}")
        else:
            operations.append(result.ok())
    operations.sort(key=lambda operation: operation.label in LAST)
    for operation in operations:

        def send(case: AnyCase) -> None:
            outcome.sent += 1
            case.call_and_validate(base_url=base_url, headers=auth, checks=CHECKS)

        test = SETTINGS(given(case=_cases(operation, seeds))(send))
        try:
            test()
        except (Exception, BaseExceptionGroup) as exc:  # every operation runs; all are reported
            outcome.failures.append(f"{operation.label}: {exc}")
    return outcome


def _regressions(seeds: Seeds) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Requests that answered 500 before their fix: (operation, case fields, and the headers
    or raw body to send instead of the case's)."""
    task = {"id": seeds.task_ids[0]}
    nul_env = {"command_payload": {"command": "ls", "env": {"A\x00": "b"}}}
    multipart = {"Content-Type": "multipart/form-data; boundary=b"}
    broken_part = b'--b\r\nContent-Disposition: form-data; name="\x1d"\r\n\r\nx\r\n--b--\r\n'
    return [
        # A group id past PostgreSQL's integer, and one that isdigit() takes but int() refuses.
        ("PUT /api/groups/{id}", {"path_parameters": {"id": 8589934591}, "body": {}}, {}),
        ("DELETE /api/groups/{id}", {"path_parameters": {"id": "²"}}, {}),
        ("POST /api/schedule/tasks", {"body": command_task(group_ids=[2**33])}, {}),
        # U+0000, which PostgreSQL's text and jsonb cannot store.
        ("POST /api/groups", {"body": {"name": "a\x00b"}}, {}),
        ("POST /api/schedule/tasks", {"body": command_task(description="\x00")}, {}),
        ("PUT /api/schedule/tasks/{id}", {"path_parameters": task, "body": {"name": "\x00"}}, {}),
        (
            "PUT /api/schedule/tasks/{id}",
            {"path_parameters": task, "body": {"task_payload": nul_env}},
            {},
        ),
        ("GET /api/schedule/tasks", {"query": {"q": "a\x00"}}, {}),
        # Times at the ends of datetime's range.
        (
            "PUT /api/schedule/tasks/{id}",
            {
                "path_parameters": task,
                "body": {
                    "recurrence_type": "once",
                    "recurrence_config": {"run_at": "0001-01-01T00:00:00+14:00"},
                },
            },
            {},
        ),
        (
            "POST /api/schedule/preview",
            {
                "body": {
                    "recurrence_type": "daily",
                    "recurrence_config": {"time": "03:00", "timezone": "Pacific/Kiritimati"},
                    "after": "0001-01-01T00:00:00+00:00",
                }
            },
            {},
        ),
        (
            "POST /api/schedule/preview",
            {
                "body": {
                    "recurrence_type": "custom",
                    "recurrence_config": {"cron": "0 0 29 2 *"},
                    "after": "8999-03-01T00:00:00+00:00",
                    "count": 1000,
                }
            },
            {},
        ),
        # Headers that are not UTF-8 (requests sends str headers as Latin-1).
        ("POST /api/groups", {"body": {"name": "g"}}, {"headers": {"Idempotency-Key": "\xe9"}}),
        ("POST /api/groups", {"body": {"name": "g"}}, {"headers": {"X-Request-Id": "\xff"}}),
        ("GET /api/me", {}, {"headers": {"Authorization": "Bearer \xff"}}),
        # Multipart bodies aiohttp cannot parse: a control character in a part's header, and
        # no boundary at all.
        ("POST /api/files", {}, {"headers": multipart, "data": broken_part}),
        ("POST /api/files", {}, {"headers": {"Content-Type": "multipart/form-data"}, "data": b"x"}),
    ]


def _cases(operation: Operation, seeds: Seeds) -> st.SearchStrategy[AnyCase]:
    """Valid and invalid requests; where the path names a task or a group, often one that exists."""
    existing: list[Any] = []
    if operation.get_parameter("id", "path") is not None:
        existing = seeds.group_ids if operation.path.startswith(GROUPS) else seeds.task_ids
        if operation.path.startswith("/api/webhooks"):
            existing = seeds.webhook_ids
    strategies: list[st.SearchStrategy[AnyCase]] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        generated = [operation.as_strategy(generation_mode=mode)]
        generated += [
            operation.as_strategy(generation_mode=mode, path_parameters={"id": value})
            for value in existing
        ]
        strategies += generated
        if mode is GenerationMode.POSITIVE and operation.label in WITH_RECURRENCE:
            strategies += [
                st.tuples(strategy, _recurrences(seeds)).map(_with_recurrence)
                for strategy in generated
            ]
    return st.one_of(strategies)


def _recurrences(seeds: Seeds) -> st.SearchStrategy[dict[str, Any]]:
    """A valid recurrence, and group ids that exist, to put into a generated body."""
    return st.builds(
        lambda recurrence, group_ids: {
            "recurrence_type": recurrence[0],
            "recurrence_config": recurrence[1],
            "group_ids": group_ids,
        },
        st.sampled_from(RECURRENCES),
        st.lists(st.sampled_from(seeds.group_ids), max_size=2),
    )


def _with_recurrence(generated: tuple[AnyCase, dict[str, Any]]) -> AnyCase:
    case, valid = generated
    if not isinstance(case.body, dict):
        return case
    body = dict(case.body)
    body["recurrence_type"] = valid["recurrence_type"]
    body["recurrence_config"] = valid["recurrence_config"]
    if case.operation.label == "POST /api/schedule/tasks":
        body["task_payload"] = PAYLOADS[str(body["task_type"])]
        body["group_ids"] = valid["group_ids"]
    elif case.operation.label == "PUT /api/schedule/tasks/{id}":
        body.pop("task_payload", None)  # which payload fits depends on the task's type
        body["group_ids"] = valid["group_ids"]
    case.body = body
    return case


async def _assert_state_intact(stack: Stack, admin: Client, database_url: str) -> None:
    """Every stored task still reads as a Task, every event of the log still decodes, and a
    replay of the log (`deployx replay`) rebuilds the same read tables."""
    tasks = await _decoded(stack, admin, f"{TASKS}?limit=1000", TaskPage)
    stored = await stack.pool.fetchval("SELECT count(*) FROM tasks")
    assert tasks.total == stored == len(tasks.items), (tasks.total, stored)
    for task in tasks.items:
        assert await _decoded(stack, admin, f"{TASKS}/{task.id}", Task) == task
    groups = await _decoded(stack, admin, GROUPS, GroupPage)
    stats = await _counts(stack, admin)

    events = await _whole_log(stack)
    assert len(events) > len(tasks.items) + len(groups.items)
    assert await rebuild(database_url) == len(events)
    assert await _decoded(stack, admin, f"{TASKS}?limit=1000", TaskPage) == tasks
    assert await _decoded(stack, admin, GROUPS, GroupPage) == groups
    assert await _counts(stack, admin) == stats


async def _counts(stack: Stack, admin: Client) -> Stats:
    """The stats without the buckets of the last hours and days, which move with the clock."""
    stats = await _decoded(stack, admin, "/api/schedule/stats", Stats)
    return msgspec.structs.replace(stats, executions_by_hour=[], executions_by_day=[])


async def _decoded(stack: Stack, admin: Client, path: str, shape: type[T]) -> T:
    headers = {"Authorization": f"Bearer {admin.token}"}
    async with stack.session.get(stack.base_url + path, headers=headers) as response:
        body = await response.read()
        assert response.status == 200, body
    return msgspec.json.decode(body, type=shape)


async def _whole_log(stack: Stack) -> list[RecordedEvent]:
    """Every event of the log, each decoded into its event type."""
    events: list[RecordedEvent] = []
    cursor = LogCursor()
    while batch := await read_after(stack.pool, cursor):
        events.extend(batch)
        cursor = LogCursor.of(batch[-1])
    return events


def test_every_task_kind_has_a_seed_payload() -> None:
    """A new kind needs an example here, or the fuzz of POST /api/schedule/tasks breaks."""
    assert set(PAYLOADS) == set(TASK_TYPES)
