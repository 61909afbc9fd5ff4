"""Batched projections: a batch leaves the read tables as its events applied one by one would."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from events.base import DEVICES_CATEGORY, Event
from events.codec import UPCASTERS, encode_data
from events.device import DeviceRegistered, DeviceWentOffline
from events.execution import (
    DeviceJobDispatched,
    DeviceResultRecorded,
    ExecutionCompleted,
    ExecutionStarted,
)
from events.task import TaskCreated, TaskDue, TaskPaused
from projections import PROJECTIONS
from services.engine.projector import catch_up
from services.infra.store import LogCursor, append, read_after, save_checkpoint
from tests.integration.test_projections import read_tables

NOW = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)


def created(task_id: str, *, pause_on_failure: bool = False) -> TaskCreated:
    return TaskCreated(
        task_id=task_id,
        user_id="olga",
        name=f"task {task_id[:4]}",
        task_type="command",
        recurrence_type="daily",
        recurrence_config={"time": "09:00", "timezone": "UTC"},
        device_ids=["dev-1", "dev-2"],
        group_ids=[3],
        task_payload={"command_payload": {"command": "true"}},
        created_at=NOW,
        next_run_time=NOW + timedelta(hours=1),
        pause_on_failure=pause_on_failure,
    )


def due(task_id: str, execution_id: str, minutes: int) -> TaskDue:
    at = NOW + timedelta(minutes=minutes)
    return TaskDue(
        task_id=task_id,
        execution_id=execution_id,
        scheduled_for=at,
        trigger="schedule",
        due_at=at,
        next_run_time=at + timedelta(days=1),
    )


def result(execution_id: str, task_id: str, device: str, status: str, code: int) -> Event:
    return DeviceResultRecorded(
        execution_id=execution_id,
        task_id=task_id,
        device_id=device,
        status=status,
        exit_code=code,
        stdout=f"{device} {status}",
        recorded_at=NOW + timedelta(minutes=code),
    )


def completed(execution_id: str, task_id: str, status: str, hours: int) -> ExecutionCompleted:
    return ExecutionCompleted(
        execution_id=execution_id,
        task_id=task_id,
        status=status,
        completed_at=NOW + timedelta(hours=hours),
        devices_targeted=2,
        devices_succeeded=1 if status == "success" else 0,
        devices_failed=0 if status == "success" else 1,
    )


async def write_log(conn: asyncpg.Connection) -> None:
    """Runs of each batched type in which some rows come up twice, in the log's order."""
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    a1, a2, b1, c1 = (str(uuid.uuid4()) for _ in range(4))
    versions: dict[str, int] = {}

    async def put(stream: str, event: Event, category: str = "command") -> None:
        await append(conn, stream, category, [event], expected_version=versions.get(stream, 0))
        versions[stream] = versions.get(stream, 0) + 1

    for task_id in (a, b):
        await put(task_id, created(task_id, pause_on_failure=task_id == b))
    await put(c, created(c))
    # Task a is due twice in a row: the second TaskDue must see the first one's counts.
    for task_id, execution_id, minutes in ((a, a1, 0), (a, a2, 1), (b, b1, 2), (c, c1, 3)):
        await put(task_id, due(task_id, execution_id, minutes))
    for task_id, execution_id in ((a, a1), (a, a2), (b, b1), (c, c1)):
        started = ExecutionStarted(
            execution_id=execution_id,
            task_id=task_id,
            trigger="schedule",
            scheduled_for=NOW,
            started_at=NOW,
            device_ids=["dev-1", "dev-2"],
        )
        await put(execution_id, started)
    await put(a1, DeviceJobDispatched(execution_id=a1, task_id=a, device_ids=["dev-1"],
                                      dispatched_at=NOW))  # fmt: skip
    # One device reported twice: the first final result stands; a non-final one gives way.
    for execution_id, task_id in ((a1, a), (a2, a), (b1, b), (c1, c)):
        await put(execution_id, result(execution_id, task_id, "dev-1", "running", 1))
        await put(execution_id, result(execution_id, task_id, "dev-1", "success", 0))
        await put(execution_id, result(execution_id, task_id, "dev-1", "failed", 2))
        await put(execution_id, result(execution_id, task_id, "dev-2", "failed", 3))
    # Two runs of task a end in a row, in the same hour; b fails and owes its pause.
    await put(a1, completed(a1, a, "success", 0))
    await put(a2, completed(a2, a, "failed", 0))
    await put(b1, completed(b1, b, "failed", 1))
    await put(c1, completed(c1, c, "success", 2))
    # A run of c due and done right after c1's end, in one batch: each step sees the last.
    c2 = str(uuid.uuid4())
    await put(c, due(c, c2, 4))
    await put(c2, completed(c2, c, "failed", 3))
    await put(c, TaskPaused(task_id=c, paused_at=NOW))
    for device, minutes in (("dev-1", 0), ("dev-2", 1), ("dev-1", 5), ("dev-1", 2)):
        registered = DeviceRegistered(
            device_id=device,
            hostname=f"{device}-{minutes}",
            registered_at=NOW + timedelta(minutes=minutes),
            capabilities={"shells": ["sh"] * (minutes % 3), "os": "linux", "arch": "x86_64"},
        )
        await put(f"device-{device}", registered, DEVICES_CATEGORY)
    await put("device-dev-2", DeviceWentOffline(device_id="dev-2", last_seen=NOW),
              DEVICES_CATEGORY)  # fmt: skip
    await put("device-dev-2", DeviceRegistered(device_id="dev-2", registered_at=NOW),
              DEVICES_CATEGORY)  # fmt: skip


async def test_a_batch_leaves_the_tables_as_its_events_one_by_one(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await write_log(conn)
        everything = await read_after(conn, LogCursor(), 10_000)
        async with conn.transaction():
            for projection in PROJECTIONS:
                for recorded in everything:
                    await projection.apply(conn, recorded)
        one_by_one = await read_tables(conn)
        tables = ", ".join(table for p in PROJECTIONS for table in p.tables)
        await conn.execute(f"TRUNCATE {tables}")

        assert await catch_up(conn) == len(everything) * len(PROJECTIONS)
        batched = await read_tables(conn)
        async with conn.transaction():  # and a batch applied again changes nothing
            for projection in PROJECTIONS:
                await projection.apply_batch(conn, everything)
        again = await read_tables(conn)
    finally:
        await conn.close()
    assert batched == one_by_one
    assert again == batched
    tasks = {row["name"]: row for row in batched["tasks"]}
    assert len(tasks) == 3
    assert sorted((t["execution_count"], t["running_executions"]) for t in tasks.values()) == [
        (1, 0),
        (2, 0),
        (2, 0),
    ]
    results = {(r["device_id"], r["status"]) for r in batched["execution_results"]}
    assert results == {("dev-1", "success"), ("dev-2", "failed")}
    assert any(t["failed_run"] is not None for t in tasks.values())


async def test_projections_at_different_checkpoints_each_go_on_from_their_own(
    database_url: str,
) -> None:
    """The projections share a transaction only when they stand at one checkpoint: one that
    is ahead (it applied part of the log alone) must neither apply that part again nor make
    the others skip it."""
    conn = await asyncpg.connect(database_url)
    try:
        await write_log(conn)
        everything = await read_after(conn, LogCursor(), 10_000)
        async with conn.transaction():
            for projection in PROJECTIONS:
                for recorded in everything:
                    await projection.apply(conn, recorded)
        one_by_one = await read_tables(conn)
        tables = ", ".join(table for p in PROJECTIONS for table in p.tables)
        await conn.execute(f"TRUNCATE {tables}")

        ahead, half = PROJECTIONS[1], len(everything) // 2
        async with conn.transaction():
            await ahead.apply_batch(conn, everything[:half])
            await save_checkpoint(conn, ahead.name, LogCursor.of(everything[half - 1]))
        applied = await catch_up(conn)
        assert await read_tables(conn) == one_by_one
        assert applied == len(everything) * len(PROJECTIONS) - half
    finally:
        await conn.close()


async def stored(conn: asyncpg.Connection, stream: str, kind: str, data: dict[str, Any]) -> None:
    """Puts an event in the log as `data`: the JSON an older version of the code wrote."""
    await conn.execute(
        "INSERT INTO events (id, stream_id, version, type, category, data) "
        "VALUES ($1, $2, 1, $3, 'command', $4::jsonb)",
        str(uuid.uuid4()),
        stream,
        kind,
        json.dumps(data),
    )


async def test_fields_an_older_event_left_out_take_their_defaults_in_a_batch(
    database_url: str,
) -> None:
    """Rows read from the log itself (not from the decoded events) still get the defaults of
    fields added after the event was stored, as decoding it does."""
    task_id, execution_id = str(uuid.uuid4()), str(uuid.uuid4())
    old_task = created(task_id)
    written = json.loads(encode_data(old_task))
    for later in ("description", "delivery", "end_at", "max_runs", "pause_on_failure"):
        del written[later]
    done = result(execution_id, task_id, "dev-1", "success", 0)
    old_result = {k: v for k, v in json.loads(encode_data(done)).items() if k != "stdout"}
    conn = await asyncpg.connect(database_url)
    try:
        await stored(conn, task_id, "TaskCreated", written)
        await stored(conn, execution_id, "DeviceResultRecorded", old_result)
        batch = await read_after(conn, LogCursor(), 100)
        async with conn.transaction():
            for projection in PROJECTIONS:
                await projection.apply_batch(conn, batch)
        task = await conn.fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)
        device = await conn.fetchrow(
            "SELECT * FROM execution_results WHERE execution_id = $1", execution_id
        )
    finally:
        await conn.close()
    assert task is not None and device is not None
    assert (task["description"], task["pause_on_failure"], task["end_at"]) == ("", False, None)
    assert json.loads(task["delivery"]) == {}
    assert (device["status"], device["stdout"], device["exit_code"]) == ("success", "", 0)


async def test_an_upcast_event_is_applied_in_its_new_shape_in_a_batch(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event stored in an older shape that an upcaster reshapes must not be read from the
    log as stored: the batch applies what the upcaster made of it."""
    task_id = str(uuid.uuid4())
    written = json.loads(encode_data(created(task_id)))
    written["title"] = written.pop("name")  # version 1 of this made-up change called it title

    def rename(shape: dict[str, Any]) -> dict[str, Any]:
        shape["name"] = shape.pop("title")
        return shape

    monkeypatch.setattr(TaskCreated, "schema_version", 2)
    monkeypatch.setitem(UPCASTERS, ("TaskCreated", 1), rename)
    conn = await asyncpg.connect(database_url)
    try:
        await stored(conn, task_id, "TaskCreated", written)
        batch = await read_after(conn, LogCursor(), 100)
        async with conn.transaction():
            await PROJECTIONS[0].apply_batch(conn, batch)
        name = await conn.fetchval("SELECT name FROM tasks WHERE id = $1", task_id)
    finally:
        await conn.close()
    assert name == f"task {task_id[:4]}"
