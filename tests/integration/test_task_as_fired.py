"""A run does its task as the task stood when its TaskDue was appended: an edit after the TaskDue
does not change that run, the next TaskDue takes it. And a run reads only the part of its task's
stream that no run read before, and of that only the edits: a task fired thousands of times
does not make each run read thousands of events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from events.base import Event
from events.task import TaskCreated, TaskDue, TaskUpdated
from services.engine.run_sources import task_as_fired
from services.engine.task_definitions import TaskDefinitions
from services.infra.db import create_pool
from services.infra.store import append

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


@pytest.fixture(name="pool")
async def definitions_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(database_url, max_size=2)
    try:
        yield created
    finally:
        await created.close()


def payload(command: str) -> dict[str, Any]:
    return {"command_payload": {"command": command}}


def due(task_id: str) -> TaskDue:
    return TaskDue(
        task_id=task_id,
        execution_id=str(uuid.uuid4()),
        scheduled_for=NOW,
        trigger="schedule",
        due_at=NOW,
    )


async def write(pool: asyncpg.Pool, task_id: str, version: int, events: list[Event]) -> int:
    await append(pool, task_id, "command", events, expected_version=version)
    return version + len(events)


async def test_an_edit_after_a_task_fired_changes_its_next_run_not_that_one(
    pool: asyncpg.Pool,
) -> None:
    task_id = str(uuid.uuid4())
    created = TaskCreated(
        task_id=task_id,
        user_id="ops",
        name="nightly",
        task_type="command",
        recurrence_type="daily",
        recurrence_config={"time": "03:00"},
        device_ids=["dev-1"],
        task_payload=payload("echo before"),
        created_at=NOW,
    )
    version = await write(pool, task_id, 0, [created, due(task_id)])
    fired_before = version
    edit = TaskUpdated(task_id=task_id, task_payload=payload("echo after"), updated_at=NOW)
    version = await write(pool, task_id, version, [edit, due(task_id)])
    fired_after = version

    as_fired = await task_as_fired(pool, task_id, fired_after)
    assert as_fired.task_payload == payload("echo after")
    # Read after the later one (this process knows the stream that far): still as it fired.
    assert (await task_as_fired(pool, task_id, fired_before)).task_payload == payload("echo before")
    renamed = TaskUpdated(task_id=task_id, name="nightly, renamed", updated_at=NOW)
    version = await write(pool, task_id, version, [due(task_id), renamed, due(task_id)])
    assert (await task_as_fired(pool, task_id, version - 2)).name == "nightly"
    last = await task_as_fired(pool, task_id, version)
    assert (last.name, last.task_payload) == ("nightly, renamed", payload("echo after"))


async def rows_read_by(pool: asyncpg.Pool, task_id: str, version: int) -> tuple[str, int]:
    """task_as_fired's command at that version, and how many rows of the log it read (the
    transaction's own statistics: rows the server fetched, whatever it returned)."""
    rows_fetched = (
        "SELECT idx_tup_fetch + seq_tup_read FROM pg_stat_xact_user_tables WHERE relname = 'events'"
    )
    async with pool.acquire() as conn, conn.transaction():
        before = await conn.fetchval(rows_fetched)
        fired = await task_as_fired(conn, task_id, version)
        rows = await conn.fetchval(rows_fetched) - before
    return fired.task_payload["command_payload"]["command"], int(rows)


async def test_a_run_reads_only_the_edits_it_has_not_read_before(pool: asyncpg.Pool) -> None:
    task_id = str(uuid.uuid4())
    created = TaskCreated(
        task_id=task_id,
        user_id="ops",
        name="every minute",
        task_type="command",
        recurrence_type="interval",
        recurrence_config={"minutes": 1},
        device_ids=["dev-1"],
        task_payload=payload("true"),
        created_at=NOW,
    )
    edit = TaskUpdated(task_id=task_id, task_payload=payload("echo edited"), updated_at=NOW)
    version = await write(pool, task_id, 0, [created, *(due(task_id) for _ in range(500))])
    version = await write(pool, task_id, version, [edit, *(due(task_id) for _ in range(500))])

    # A process's first run of the task reads its stream once (returning the two definitions).
    assert (await rows_read_by(pool, task_id, version))[0] == "echo edited"
    for _ in range(3):
        version = await write(pool, task_id, version, [due(task_id)])
        # Each run after: its own TaskDue and the TaskCreated (is it the stream read before?).
        assert await rows_read_by(pool, task_id, version) == ("echo edited", 2)
    assert await rows_read_by(pool, task_id, 2) == ("true", 0)  # read before
    definitions = TaskDefinitions()
    assert (await definitions.at(pool, task_id, version)).task_payload == payload("echo edited")
    assert definitions.rows_read == 2  # the TaskCreated and the edit, of 1,005 events
