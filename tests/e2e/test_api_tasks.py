"""Tasks through the HTTP API: create, read, list, update, delete, pause, resume, run now,
executions, history, and Idempotency-Key; every write is read back at once (read-your-writes)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.e2e.api import (
    EVENT_FIELDS,
    EXECUTION_FIELDS,
    TASK_FIELDS,
    TASKS,
    command_task,
    create_task,
    event_types,
    fetch_task,
    fresh_user,
    hhmm,
    ids,
    instant,
    list_tasks,
    next_daily,
    once_task,
    software_task,
    task_path,
    time_of_day_from_now,
)
from tests.stack import Client, Stack

TOKYO = ZoneInfo("Asia/Tokyo")  # no daylight saving: a daily time is 24 hours apart


def daily_in_tokyo(hours_from_now: int, **changes: Any) -> tuple[dict[str, Any], datetime]:
    """A daily task body firing `hours_from_now` hours ahead, and when it should next run."""
    at = time_of_day_from_now(hours_from_now, TOKYO)
    config = {"time": hhmm(at), "timezone": "Asia/Tokyo"}
    expected = next_daily(at, TOKYO, datetime.now(UTC))
    return command_task(recurrence_config=config, **changes), expected


async def execute(client: Client, task_id: str, key: str | None = None) -> str:
    headers = {"Idempotency-Key": key} if key else None
    status, body = await client.post(task_path(task_id, "execute"), headers=headers)
    assert status == 202, body
    assert set(body) == {"execution_id"}, body
    return body["execution_id"]  # type: ignore[no-any-return]


async def executions(client: Client, task_id: str, query: str = "") -> dict[str, Any]:
    path = task_path(task_id, "executions") + (f"?{query}" if query else "")
    status, page = await client.get(path)
    assert status == 200, page
    assert set(page) == {"items", "total"}, page
    return page  # type: ignore[no-any-return]


# --- create, get, list -------------------------------------------------------------------------


async def test_create_answers_the_task_and_get_and_list_show_it(operator: Client) -> None:
    body, expected_next_run = daily_in_tokyo(3)

    status, task = await operator.post(TASKS, body)

    assert status == 201, task
    for field, types in TASK_FIELDS.items():
        assert isinstance(task[field], types), (field, task[field])
    assert str(uuid.UUID(task["id"])) == task["id"]
    assert task["name"] == body["name"]
    assert task["description"] == body["description"]
    assert (task["task_type"], task["recurrence_type"]) == ("command", "daily")
    assert task["recurrence_config"] == body["recurrence_config"]
    assert task["device_ids"] == body["device_ids"]
    assert task["group_ids"] == []
    assert task["task_payload"]["command_payload"]["command"] == "apt update"
    assert (task["status"], task["execution_count"], task["last_run_time"]) == ("pending", 0, None)
    assert task["last_execution_status"] is None
    assert instant(task["next_run_time"]) == expected_next_run
    assert instant(task["created_at"]) <= instant(task["updated_at"])
    assert await fetch_task(operator, task["id"]) == task
    assert (await list_tasks(operator))["items"] == [task]


async def test_create_of_each_task_type(operator: Client) -> None:
    file_task = command_task(
        name="ship app.conf",
        task_type="file_deployment",
        task_payload={"file_payload": {"file_id": "f-1", "destination": "/etc/app.conf"}},
    )
    for body in (command_task(), software_task(), file_task):
        created = await create_task(operator, body)

        task = await fetch_task(operator, created["id"])
        assert task["task_type"] == body["task_type"]
        [(kind, payload)] = body["task_payload"].items()
        assert task["task_payload"].keys() == {kind}
        assert payload.items() <= task["task_payload"][kind].items()  # defaults may be added


async def test_list_filters_by_status_task_type_and_q(operator: Client) -> None:
    backup = await create_task(operator, command_task(name="Nightly backup"))
    nginx = await create_task(operator, software_task(name="install nginx"))
    cleanup = await create_task(
        operator, command_task(name="clean /tmp", description="runs after the NIGHTLY backup")
    )
    assert (await operator.post(task_path(cleanup["id"], "pause")))[0] == 200

    async def found(query: str) -> tuple[set[str], int]:
        page = await list_tasks(operator, query)
        return set(ids(page["items"])), page["total"]

    assert await found("") == ({backup["id"], nginx["id"], cleanup["id"]}, 3)
    assert await found("status=paused") == ({cleanup["id"]}, 1)
    assert await found("status=pending") == ({backup["id"], nginx["id"]}, 2)
    assert await found("task_type=software_deployment") == ({nginx["id"]}, 1)
    assert await found("task_type=file_deployment") == (set(), 0)
    assert await found("q=nightly") == ({backup["id"], cleanup["id"]}, 2)  # name or description
    assert await found("q=nginx&task_type=command") == (set(), 0)
    assert await found("status=pending&task_type=command") == ({backup["id"]}, 1)


async def test_list_pages_with_limit_and_offset_and_total_counts_all(operator: Client) -> None:
    created = [await create_task(operator, command_task(name=f"task {n}")) for n in range(5)]

    pages = [await list_tasks(operator, f"limit=2&offset={offset}") for offset in (0, 2, 4, 6)]

    assert [len(page["items"]) for page in pages] == [2, 2, 1, 0]
    assert {page["total"] for page in pages} == {5}
    listed = [task_id for page in pages for task_id in ids(page["items"])]
    assert sorted(listed) == sorted(ids(created))  # each task on exactly one page


# --- update --------------------------------------------------------------------------------------


async def test_put_name_only_changes_the_name_and_keeps_the_schedule(operator: Client) -> None:
    task = await create_task(operator)

    status, updated = await operator.put(task_path(task["id"]), {"name": "apt update (renamed)"})

    assert status == 200, updated
    assert updated["name"] == "apt update (renamed)"
    assert updated["next_run_time"] == task["next_run_time"]
    assert instant(updated["updated_at"]) >= instant(task["updated_at"])
    unchanged = set(TASK_FIELDS) - {"name", "updated_at"}
    assert {field: updated[field] for field in unchanged} == {f: task[f] for f in unchanged}
    assert await fetch_task(operator, task["id"]) == updated


async def test_put_recurrence_recomputes_next_run_time(operator: Client) -> None:
    task = await create_task(operator, daily_in_tokyo(3)[0])
    at = time_of_day_from_now(7, TOKYO)
    config = {"time": hhmm(at), "timezone": "Asia/Tokyo"}

    status, updated = await operator.put(task_path(task["id"]), {"recurrence_config": config})

    assert status == 200, updated
    assert updated["recurrence_config"] == config
    assert instant(updated["next_run_time"]) == next_daily(at, TOKYO, datetime.now(UTC))
    assert await fetch_task(operator, task["id"]) == updated


async def test_put_recurrence_type_switches_the_schedule(operator: Client) -> None:
    task = await create_task(operator)
    run_at = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)

    status, updated = await operator.put(
        task_path(task["id"]),
        {"recurrence_type": "once", "recurrence_config": {"run_at": run_at.isoformat()}},
    )

    assert status == 200, updated
    assert updated["recurrence_type"] == "once"
    assert instant(updated["next_run_time"]) == run_at
    assert await fetch_task(operator, task["id"]) == updated


async def test_put_schedule_of_a_paused_task_keeps_it_paused(operator: Client) -> None:
    task = await create_task(operator)
    assert (await operator.post(task_path(task["id"], "pause")))[0] == 200

    status, updated = await operator.put(
        task_path(task["id"]), {"recurrence_config": {"time": "22:15"}}
    )

    assert status == 200, updated
    assert (updated["status"], updated["next_run_time"]) == ("paused", None)
    assert updated["recurrence_config"]["time"] == "22:15"
    assert await fetch_task(operator, task["id"]) == updated


async def test_put_device_ids_and_payload(operator: Client) -> None:
    task = await create_task(operator)
    payload = {"command_payload": {"command": "apt upgrade -y", "timeout_seconds": 600}}

    status, updated = await operator.put(
        task_path(task["id"]), {"device_ids": ["local-3"], "task_payload": payload}
    )

    assert status == 200, updated
    assert updated["device_ids"] == ["local-3"]
    assert updated["task_payload"]["command_payload"]["command"] == "apt upgrade -y"
    assert updated["task_payload"]["command_payload"]["timeout_seconds"] == 600
    assert await fetch_task(operator, task["id"]) == updated


# --- delete --------------------------------------------------------------------------------------


async def test_delete_removes_the_task_but_keeps_its_history(operator: Client) -> None:
    task = await create_task(operator)

    status, body = await operator.delete(task_path(task["id"]))

    assert (status, body) == (204, None)
    assert (await operator.get(task_path(task["id"])))[0] == 404
    assert await list_tasks(operator) == {"items": [], "total": 0}
    assert await event_types(operator, task["id"]) == ["TaskCreated", "TaskDeleted"]
    assert (await operator.delete(task_path(task["id"])))[0] == 404


# --- pause and resume ---------------------------------------------------------------------------


async def test_pause_then_resume_a_daily_task(operator: Client) -> None:
    body, expected_next_run = daily_in_tokyo(5)
    task = await create_task(operator, body)

    status, paused = await operator.post(task_path(task["id"], "pause"))

    assert (status, paused["status"], paused["next_run_time"]) == (200, "paused", None)
    assert await fetch_task(operator, task["id"]) == paused

    status, resumed = await operator.post(task_path(task["id"], "resume"))

    assert (status, resumed["status"]) == (200, "pending")
    assert instant(resumed["next_run_time"]) == expected_next_run
    assert await fetch_task(operator, task["id"]) == resumed


async def test_resume_of_a_one_time_task_arms_its_run_at(operator: Client) -> None:
    run_at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    task = await create_task(operator, once_task(run_at))
    assert instant(task["next_run_time"]) == run_at
    assert (await operator.post(task_path(task["id"], "pause")))[0] == 200

    status, resumed = await operator.post(task_path(task["id"], "resume"))

    assert (status, resumed["status"]) == (200, "pending")
    assert instant(resumed["next_run_time"]) == run_at


# --- execute and executions ---------------------------------------------------------------------


async def test_execute_starts_one_manual_run_that_the_executions_list_shows(
    operator: Client,
) -> None:
    task = await create_task(operator)
    before = datetime.now(UTC)

    execution_id = await execute(operator, task["id"])

    page = await executions(operator, task["id"])
    assert page["total"] == 1
    [run] = page["items"]
    assert set(EXECUTION_FIELDS) <= set(run), run
    assert (run["id"], run["task_id"], run["trigger"]) == (execution_id, task["id"], "manual")
    assert before <= instant(run["scheduled_for"]) <= datetime.now(UTC)
    assert run["status"] in ("running", "success", "failed")
    assert {"devices_targeted", "devices_succeeded", "devices_failed", "execution_details"} <= set(
        run["result"]
    )
    # A run now leaves the schedule alone.
    assert (await fetch_task(operator, task["id"]))["next_run_time"] == task["next_run_time"]


async def test_execute_runs_a_paused_task_and_leaves_it_paused(operator: Client) -> None:
    task = await create_task(operator)
    assert (await operator.post(task_path(task["id"], "pause")))[0] == 200

    execution_id = await execute(operator, task["id"])

    assert ids((await executions(operator, task["id"]))["items"]) == [execution_id]
    after = await fetch_task(operator, task["id"])
    assert (after["status"], after["next_run_time"]) == ("paused", None)


async def test_executions_are_newest_first_and_paged(operator: Client) -> None:
    task = await create_task(operator)
    started = [await execute(operator, task["id"]) for _ in range(3)]
    newest_first = started[::-1]

    assert ids((await executions(operator, task["id"]))["items"]) == newest_first
    first = await executions(operator, task["id"], "limit=2")
    second = await executions(operator, task["id"], "limit=2&offset=2")
    assert (first["total"], second["total"]) == (3, 3)
    assert ids(first["items"]) + ids(second["items"]) == newest_first


async def test_executions_of_a_task_never_run_are_empty(operator: Client) -> None:
    task = await create_task(operator)

    assert await executions(operator, task["id"]) == {"items": [], "total": 0}


# --- events -------------------------------------------------------------------------------------


async def test_events_are_the_whole_history_in_order_even_after_delete(operator: Client) -> None:
    task = await create_task(operator)
    path = task_path(task["id"])
    assert (await operator.put(path, {"name": "renamed"}))[0] == 200
    assert (await operator.post(f"{path}/pause"))[0] == 200
    assert (await operator.post(f"{path}/resume"))[0] == 200
    execution_id = await execute(operator, task["id"])
    assert (await operator.delete(path))[0] == 204

    status, history = await operator.get(f"{path}/events")

    assert status == 200, history
    events = history["items"]
    assert [event["type"] for event in events] == [
        "TaskCreated",
        "TaskUpdated",
        "TaskPaused",
        "TaskResumed",
        "TaskDue",
        "TaskDeleted",
    ]
    for event in events:
        assert set(EVENT_FIELDS) <= set(event), event
        assert event["stream_id"] == task["id"]
        assert event["data"]["task_id"] == task["id"]
        assert event["metadata"]["user"] == task["user_id"]
    assert [event["version"] for event in events] == list(range(1, 7))
    positions = [event["position"] for event in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert events[0]["data"]["name"] == "apt update"
    assert events[1]["data"]["name"] == "renamed"
    due = events[4]["data"]
    assert (due["trigger"], due["execution_id"]) == ("manual", execution_id)
    assert "scheduled_for" in due


async def test_each_edit_in_the_history_lists_its_fields_old_and_new_values(
    operator: Client,
) -> None:
    task = await create_task(operator)  # daily at 03:00 UTC, named "apt update"
    path = task_path(task["id"])
    weekly = {"time": "04:15", "days": [1], "timezone": "Europe/Kyiv"}
    for patch in (
        {"recurrence_type": "weekly", "recurrence_config": weekly},
        {"name": "apt upgrade", "max_runs": 3},
        {"max_runs": None, "name": "apt upgrade"},
    ):
        assert (await operator.put(path, patch))[0] == 200

    status, history = await operator.get(f"{path}/events")

    assert status == 200, history
    edits = [event for event in history["items"] if event["type"] == "TaskUpdated"]
    assert [edit["changes"] for edit in edits] == [
        [
            {"field": "recurrence_type", "old": "daily", "new": "weekly"},
            {
                "field": "recurrence_config",
                "old": {"time": "03:00", "timezone": "UTC"},
                "new": weekly,
            },
        ],
        [
            {"field": "name", "old": "apt update", "new": "apt upgrade"},
            {"field": "max_runs", "old": None, "new": 3},
        ],
        [{"field": "max_runs", "old": 3, "new": None}],
    ]
    assert all("changes" not in event for event in history["items"] if event not in edits)


# --- Idempotency-Key ----------------------------------------------------------------------------


async def test_create_retried_with_the_same_key_answers_the_same_and_creates_once(
    operator: Client,
) -> None:
    key = {"Idempotency-Key": "create-1"}

    first = await operator.post(TASKS, command_task(), headers=key)
    retry = await operator.post(TASKS, command_task(), headers=key)

    assert first[0] == 201, first
    assert retry == first
    assert ids((await list_tasks(operator))["items"]) == [first[1]["id"]]
    assert await event_types(operator, first[1]["id"]) == ["TaskCreated"]


async def test_a_key_reused_with_another_body_is_refused(operator: Client) -> None:
    key = {"Idempotency-Key": "create-2"}
    status, task = await operator.post(TASKS, command_task(), headers=key)
    assert status == 201, task

    status, body = await operator.post(TASKS, command_task(name="other"), headers=key)

    assert status == 422, body
    assert "Idempotency-Key" in body["error"]["message"]
    assert (await list_tasks(operator))["total"] == 1


async def test_the_same_key_of_two_users_is_two_requests(shared_stack: Stack) -> None:
    alice = await fresh_user(shared_stack, "operator")
    bob = await fresh_user(shared_stack, "operator")
    key = {"Idempotency-Key": "shared-key"}

    status_a, task_a = await alice.post(TASKS, command_task(), headers=key)
    status_b, task_b = await bob.post(TASKS, command_task(), headers=key)

    assert (status_a, status_b) == (201, 201)
    assert task_a["id"] != task_b["id"]
    assert ids((await list_tasks(alice))["items"]) == [task_a["id"]]
    assert ids((await list_tasks(bob))["items"]) == [task_b["id"]]


async def test_concurrent_duplicates_of_one_create_make_one_task(operator: Client) -> None:
    key = {"Idempotency-Key": "create-concurrently"}

    answers = await asyncio.gather(
        *(operator.post(TASKS, command_task(), headers=key) for _ in range(5))
    )

    assert {status for status, _ in answers} == {201}, answers
    assert len({body["id"] for _, body in answers}) == 1
    task_id = answers[0][1]["id"]
    assert ids((await list_tasks(operator))["items"]) == [task_id]
    assert await event_types(operator, task_id) == ["TaskCreated"]


async def test_execute_retried_with_the_same_key_runs_once(operator: Client) -> None:
    task = await create_task(operator)

    first = await execute(operator, task["id"], key="run-1")
    retry = await execute(operator, task["id"], key="run-1")
    other = await execute(operator, task["id"], key="run-2")

    assert retry == first != other
    assert sorted(ids((await executions(operator, task["id"]))["items"])) == sorted([first, other])
    assert await event_types(operator, task["id"]) == ["TaskCreated", "TaskDue", "TaskDue"]


async def test_concurrent_duplicates_of_one_execute_run_once(operator: Client) -> None:
    task = await create_task(operator)

    started = await asyncio.gather(*(execute(operator, task["id"], key="run") for _ in range(5)))

    assert len(set(started)) == 1
    assert ids((await executions(operator, task["id"]))["items"]) == started[:1]
