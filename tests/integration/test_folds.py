"""Replay's fold (projections/*_fold.py, services/engine/bulk_rebuild.py) leaves exactly the
tables and dead letters the live projector's statements leave, on a log of every event type."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
from msgspec import UNSET

from events.base import DEVICES_CATEGORY, Event
from events.codec import EVENT_TYPES
from events.device import GroupCreated, GroupDeleted, GroupUpdated
from events.execution import (
    Delivery,
    DeviceResultRecorded,
    DevicesWaiting,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionRequested,
    ExecutionStarted,
    ExecutionTargetsAdded,
)
from events.task import (
    RunMissed,
    RunSkipped,
    TaskDeleted,
    TaskDue,
    TaskPaused,
    TaskResumed,
    TaskUpdated,
)
from projections import PROJECTIONS
from services.engine import bulk_rebuild, shadow
from services.engine.projector import catch_up
from services.engine.replay import rebuild
from services.infra.store import append
from tests.integration.test_projection_batches import NOW, completed, created, due, write_log
from tests.integration.test_projections import read_tables

# A zone half an hour off UTC: the hourly counts are cut in the session's zone.
ZONE = "Asia/Kolkata"


async def write_the_rest(conn: asyncpg.Connection) -> None:
    """The event types write_log has not, in the states where their rules branch."""
    versions: dict[str, int] = {}

    async def put(stream: str, event: Event, category: str = "command", **meta: Any) -> None:
        version = versions.get(stream, 0)
        await append(conn, stream, category, [event], expected_version=version, metadata=meta)
        versions[stream] = version + 1

    edited, gone, ended = (str(uuid.uuid4()) for _ in range(3))
    for task_id in (edited, gone, ended):
        await put(task_id, created(task_id, pause_on_failure=True))
    # Edited: fields changed, the policy turned off, then ended by its limit, then re-armed.
    await put(
        edited,
        TaskUpdated(
            task_id=edited,
            name="renamed",
            recurrence_type="once",
            recurrence_config={"at": "2026-12-24T08:00:00Z"},
            device_ids=["dev-9"],
            group_ids=[1, 2],
            task_payload={"command_payload": {"command": "date"}},
            delivery=Delivery(max_concurrency=2, waves=[1, "50%"]),
            end_at=NOW + timedelta(days=3),
            max_runs=4,
            pause_on_failure=False,
            updated_at=NOW + timedelta(minutes=1),
            next_run_time=NOW + timedelta(hours=2),
        ),
    )
    edited_run = str(uuid.uuid4())
    await put(edited, due(edited, edited_run, 5))
    await put(
        edited,
        TaskUpdated(
            task_id=edited,
            updated_at=NOW + timedelta(minutes=6),
            completed_by="max_runs",
            end_at=None,
            max_runs=UNSET,
        ),
    )
    await put(edited_run, completed(edited_run, edited, "failed", 0))
    await put(
        edited,
        TaskUpdated(
            task_id=edited,
            updated_at=NOW + timedelta(minutes=7),
            next_run_time=NOW + timedelta(days=1),
            max_runs=None,
            rearmed=True,
        ),
    )
    # Ended: a run owes its pause, a skipped and a missed occurrence, paused and resumed.
    ended_run = str(uuid.uuid4())
    await put(ended, due(ended, ended_run, 8))
    await put(ended_run, completed(ended_run, ended, "failed", 1))
    await put(ended, TaskPaused(task_id=ended, paused_at=NOW))  # settles the pause owed
    await put(
        ended,
        RunSkipped(
            task_id=ended,
            scheduled_for=NOW,
            reason="overlap",
            recorded_at=NOW,
            next_run_time=NOW + timedelta(days=2),
        ),
    )
    await put(ended, TaskResumed(task_id=ended, resumed_at=NOW, next_run_time=NOW))
    owing = str(uuid.uuid4())
    await put(ended, due(ended, owing, 9))
    await put(owing, completed(owing, ended, "failed", 1))
    await put(
        ended,
        RunMissed(
            task_id=ended, scheduled_for=NOW, reason="late", recorded_at=NOW, task_failed=True
        ),
    )
    await put(
        ended,
        RunSkipped(
            task_id=ended, scheduled_for=NOW, reason="end", recorded_at=NOW, completed_by="end_at"
        ),
    )
    # Held: a failed run owes its pause, paused (settled), due while paused, resumed with a
    # run in flight, ended by end_at while that run still goes on.
    held, first, second = (str(uuid.uuid4()) for _ in range(3))
    await put(held, created(held, pause_on_failure=True))
    await put(held, due(held, first, 10))
    await put(first, completed(first, held, "failed", 1))
    await put(held, TaskPaused(task_id=held, paused_at=NOW))
    await put(held, due(held, second, 11))
    # Its targets in two events (more than one event may carry), still in flight.
    started = ExecutionStarted(
        execution_id=second,
        task_id=held,
        trigger="schedule",
        scheduled_for=NOW,
        started_at=NOW,
        device_ids=["dev-1"],
        devices_targeted=3,
    )
    await put(second, started)
    await put(second, ExecutionTargetsAdded(execution_id=second, task_id=held,
                                            device_ids=["dev-1", "dev-2", "dev-3"]))  # fmt: skip
    # Output with every character COPY's text format escapes.
    odd = DeviceResultRecorded(
        execution_id=second,
        task_id=held,
        device_id="dev-2",
        status="failed",
        exit_code=2,
        stdout='tab\there\nnew line\\back slash "quoted" \r\x08\x0c\x0b é',
        stderr="\\N",
        recorded_at=NOW,
    )
    await put(second, odd)
    await put(held, TaskResumed(task_id=held, resumed_at=NOW, next_run_time=NOW))
    await put(
        held,
        RunSkipped(
            task_id=held,
            scheduled_for=NOW,
            reason="end",
            recorded_at=NOW,
            next_run_time=NOW + timedelta(days=1),  # so that it leaves the pause owed alone
            completed_by="end_at",
        ),
    )
    # Gone: due by hand (not scheduled), deleted while its run goes on, which ends later.
    gone_run = str(uuid.uuid4())
    await put(
        gone,
        TaskDue(
            task_id=gone,
            execution_id=gone_run,
            scheduled_for=NOW,
            trigger="manual",
            due_at=NOW,
        ),
    )
    await put(gone, TaskDeleted(task_id=gone, deleted_at=NOW))
    await put(
        gone_run,
        ExecutionStarted(
            execution_id=gone_run,
            task_id=gone,
            trigger="manual",
            scheduled_for=NOW,
            started_at=NOW,
            device_ids=["dev-1", "dev-2", "dev-3"],
            delivery=Delivery(offline_wait_seconds=60),
            devices_targeted=5,
        ),
    )
    await put(gone_run, DevicesWaiting(execution_id=gone_run, task_id=gone,
                                       device_ids=["dev-2", "dev-4"], since=NOW))  # fmt: skip
    await put(
        gone_run,
        ExecutionCancelRequested(
            execution_id=gone_run, task_id=gone, requested_at=NOW + timedelta(minutes=2)
        ),
    )
    await put(gone_run, completed(gone_run, gone, "canceled", 2))
    # An ad-hoc run (no task) asked for by a user, and a rerun of it.
    adhoc, rerun = str(uuid.uuid4()), str(uuid.uuid4())
    for execution_id, trigger, rerun_of in ((adhoc, "adhoc", None), (rerun, "rerun", adhoc)):
        requested = ExecutionRequested(
            execution_id=execution_id,
            trigger=trigger,
            name="look around",
            task_type="command",
            task_payload={"command_payload": {"command": "ls"}},
            device_ids=["dev-1"],
            requested_at=NOW,
            rerun_of=rerun_of,
            delivery=Delivery(max_errors="10%"),
        )
        await put(execution_id, requested, user="olga")
    await put(adhoc, ExecutionCompleted(execution_id=adhoc, task_id="", status="success",
                                        completed_at=NOW))  # fmt: skip
    for group_id, name in ((7, "web"), (8, "db")):
        await put(
            f"group-{group_id}",
            GroupCreated(
                group_id=group_id, name=name, device_ids=["dev-1"], user_id="olga", created_at=NOW
            ),
            DEVICES_CATEGORY,
        )
    renamed = GroupUpdated(
        group_id=7, name="www", device_ids=["dev-1", "dev-2"], updated_at=NOW + timedelta(hours=1)
    )
    await put("group-7", renamed, DEVICES_CATEGORY)
    await put("group-8", GroupDeleted(group_id=8, deleted_at=NOW), DEVICES_CATEGORY)


async def write_undecodable(conn: asyncpg.Connection) -> None:
    """A row no code of this release reads, and a later event of its stream behind it."""
    stream = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO events (id, stream_id, version, type, category, data) "
        "VALUES ($1, $2, 1, 'TaskInvented', 'command', '{}'), "
        "($3, $2, 2, 'TaskCreated', 'command', $4::jsonb)",
        str(uuid.uuid4()),
        stream,
        str(uuid.uuid4()),
        '{"task_id": "' + stream + '", "user_id": "u", "name": "n", "task_type": "command", '
        '"recurrence_type": "daily", "recurrence_config": {}, '
        '"created_at": "2026-11-30T09:00:00Z"}',
    )


async def letters(conn: asyncpg.Connection, schema: str = "public") -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        f"SELECT replace(consumer, '@rebuild', ''), event_id, position, stream_id, event_type, "
        f"error FROM {schema}.dead_letters ORDER BY 1, 3"
    )
    return [tuple(row) for row in rows]


async def test_replay_folds_the_log_into_the_tables_the_live_projector_makes(
    database_url: str,
) -> None:
    admin = await asyncpg.connect(database_url)
    try:
        name = await admin.fetchval("SELECT current_database()")
        await admin.execute(f"ALTER DATABASE \"{name}\" SET TimeZone = '{ZONE}'")
    finally:
        await admin.close()
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SHOW TimeZone") == ZONE
        await write_log(conn)
        await write_the_rest(conn)
        await write_undecodable(conn)
        types = await conn.fetch("SELECT DISTINCT type FROM events")
        assert {row["type"] for row in types} == set(EVENT_TYPES) | {"TaskInvented"}
        await catch_up(conn)
        live = await read_tables(conn)
        live_letters = await letters(conn)

        # The fold alone, into shadow tables: every projection folded, nothing left to apply.
        tables = [table for projection in PROJECTIONS for table in projection.tables]
        await shadow.create(conn, PROJECTIONS, keys_later=tables)
        await conn.execute(f"SET search_path = {shadow.SHADOW}, public")
        folding = bulk_rebuild.folds(PROJECTIONS, await bulk_rebuild.zone_of(conn))
        folded, read = await bulk_rebuild.load(conn, folding)
        await shadow.add_keys(conn, tables)
        assert folded == [p.name for p in PROJECTIONS]
        assert read == await conn.fetchval("SELECT count(*) FROM events")
        assert await read_tables(conn) == live
        assert await letters(conn, shadow.SHADOW) == live_letters
        await conn.execute("RESET search_path")
        await shadow.drop(conn)

        # And the whole replay, swap included.
        await rebuild(database_url)
        replayed = await read_tables(conn)
        replayed_letters = await letters(conn)
    finally:
        await conn.close()
    assert replayed == live
    assert replayed_letters == live_letters
    # The log's branches were taken: what the tables show of them.
    tasks = {row["name"]: row for row in live["tasks"]}
    assert tasks["renamed"]["status"] == "pending" and tasks["renamed"]["max_runs"] is None
    held = next(
        task for task in tasks.values() if task["completed_by"] and task["running_executions"]
    )
    assert (held["status"], held["failed_run"]) == ("running", None)
    assert len(live_letters) == 2 * len(PROJECTIONS)
    assert {row["name"] for row in live["device_groups"]} == {"www"}
    hours = {row["hour"].minute for row in live["execution_stats_hourly"]}
    assert hours == {30}  # cut at the zone's hour, half past in UTC


async def test_a_value_the_tables_refuse_is_set_aside_by_replay_as_by_the_projector(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await write_log(conn)
        run = await conn.fetchval(
            "SELECT stream_id FROM events WHERE type = 'ExecutionCompleted' LIMIT 1"
        )
        task_id = await conn.fetchval(
            "SELECT data ->> 'task_id' FROM events WHERE stream_id = $1", run
        )
        version = await conn.fetchval("SELECT max(version) FROM events WHERE stream_id = $1", run)
        # What an older executor, before the boundary checks, could have written: an exit code
        # the results table's integer column cannot hold; then more of that run.
        poison = DeviceResultRecorded(
            execution_id=run,
            task_id=task_id,
            device_id="dev-7",
            status="failed",
            exit_code=1_099_511_627_776,
            recorded_at=NOW,
        )
        later = DeviceResultRecorded(
            execution_id=run, task_id=task_id, device_id="dev-8", status="success", recorded_at=NOW
        )
        await append(conn, run, "command", [poison, later], expected_version=version)
        await catch_up(conn)
        live, live_letters = await read_tables(conn), await letters(conn)
        await rebuild(database_url)
        replayed, replayed_letters = await read_tables(conn), await letters(conn)
    finally:
        await conn.close()
    assert [(letter[0], letter[4]) for letter in live_letters] == [
        ("executions", "DeviceResultRecorded"),
        ("executions", "DeviceResultRecorded"),
    ]
    assert replayed_letters == live_letters
    assert replayed == live
