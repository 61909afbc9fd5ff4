"""The event log on a real PostgreSQL: gap-free reading, optimistic concurrency, append-only."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import asyncpg
import pytest

from events.task import TaskPaused
from services.infra.db import create_pool
from services.infra.store import (
    ConcurrencyError,
    Connection,
    DuplicateEvent,
    LogCursor,
    StreamEvent,
    append,
    append_each,
    has_events_after,
    has_events_past,
    never_appending,
    read_after,
    read_stream,
    save_checkpoint,
)

WRITERS = 16
TOTAL_EVENTS = 20_000
SHARED_STREAMS = 40


def paused(stream_id: str) -> TaskPaused:
    return TaskPaused(task_id=stream_id, paused_at=datetime.now(UTC))


async def test_concurrent_writers_and_a_tailing_reader_see_every_event_once(
    database_url: str,
) -> None:
    pool = await create_pool(database_url, max_size=WRITERS + 2)
    appended_ids: set[str] = set()
    done_writing = asyncio.Event()

    async def writer(number: int) -> None:
        rng = random.Random(number)
        own_versions: dict[str, int] = defaultdict(int)
        written = 0
        while written < TOTAL_EVENTS // WRITERS:
            batch = min(rng.randint(1, 4), TOTAL_EVENTS // WRITERS - written)
            if rng.random() < 0.5:
                # Streams only this writer uses: it knows their versions.
                stream = f"own-{number}-{rng.randrange(20)}"
                expected: int | None = own_versions[stream]
            else:
                # Streams all writers race on: append at whatever version they have.
                stream, expected = f"shared-{rng.randrange(SHARED_STREAMS)}", None
            recorded = await append(
                pool, stream, "test", [paused(stream)] * batch, expected_version=expected
            )
            own_versions[stream] += batch
            appended_ids.update(event.id for event in recorded)
            written += batch

    async def reader() -> list[tuple[str, str, int]]:
        seen: list[tuple[str, str, int]] = []
        cursor = LogCursor()
        async with pool.acquire() as conn:
            while True:
                finished = done_writing.is_set()
                batch = await read_after(conn, cursor, 500)
                seen.extend((event.id, event.stream_id, event.version) for event in batch)
                if batch:
                    cursor = LogCursor.of(batch[-1])
                elif finished:
                    return seen
                else:
                    await asyncio.sleep(0.001)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(WRITERS)))
    done_writing.set()
    seen = await reading
    await pool.close()

    ids = [event_id for event_id, _, _ in seen]
    assert len(ids) == TOTAL_EVENTS
    assert len(set(ids)) == TOTAL_EVENTS, "an event was read twice"
    assert set(ids) == appended_ids, "the reader missed events or saw unknown ones"
    versions: dict[str, list[int]] = defaultdict(list)
    for _, stream, version in seen:
        versions[stream].append(version)
    for stream, stream_versions in versions.items():
        assert stream_versions == list(range(1, len(stream_versions) + 1)), stream


async def test_append_at_a_stale_version_is_a_clear_conflict(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await append(conn, "task-a", "test", [paused("task-a")], expected_version=0)
        with pytest.raises(ConcurrencyError) as stale:
            await append(conn, "task-a", "test", [paused("task-a")], expected_version=0)
        assert "is at version 1, not the expected 0" in stale.value.message
        with pytest.raises(ConcurrencyError) as ahead:
            await append(conn, "task-a", "test", [paused("task-a")], expected_version=5)
        assert ahead.value.actual == 1
        assert [event.version for event in await read_stream(conn, "task-a")] == [1]
    finally:
        await conn.close()


async def test_racing_appenders_at_one_version_one_wins(database_url: str) -> None:
    pool = await create_pool(database_url, max_size=10)
    try:
        outcomes = await asyncio.gather(
            *(
                append(pool, "task-b", "test", [paused("task-b")], expected_version=0)
                for _ in range(10)
            ),
            return_exceptions=True,
        )
    finally:
        await pool.close()
    assert sum(1 for outcome in outcomes if isinstance(outcome, list)) == 1
    assert all(isinstance(o, ConcurrencyError) for o in outcomes if not isinstance(o, list))


async def test_an_event_id_is_appended_once(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        event_id = "00000000-0000-4000-8000-000000000001"
        await append(conn, "s", "test", [paused("s")], expected_version=None, event_ids=[event_id])
        with pytest.raises(DuplicateEvent):
            await append(
                conn, "t", "test", [paused("t")], expected_version=None, event_ids=[event_id]
            )
    finally:
        await conn.close()


@pytest.mark.parametrize("new_streams", [False, True], ids=["at-the-end", "new-streams"])
async def test_racing_batches_at_any_version_write_each_event_once(
    database_url: str, new_streams: bool
) -> None:
    """Registry replicas appending the same batch (ids from the devices) while other batches
    go to the same streams: each event once, every stream's versions without a gap, and every
    writer told that all of its batch is in the log; also when each writer takes the streams
    for new ones (version 1 first, as the registry does for devices it never saw)."""
    streams = [f"device-{number}" for number in range(300)]
    namespace = uuid.UUID("6c1f1d0e-8a43-4a8e-9a0e-3f2b1c4d5e6f")
    batch = [StreamEvent(s, "test", paused(s), str(uuid.uuid5(namespace, s))) for s in streams]
    pool = await create_pool(database_url, max_size=12)

    others = [
        [StreamEvent(s, "test", paused(s), str(uuid.uuid4())) for s in streams] for _ in range(4)
    ]
    try:
        outcomes = await asyncio.gather(
            *(append_each(pool, batch, new_streams=new_streams) for _ in range(4)),
            *(append_each(pool, other, new_streams=new_streams) for other in others),
        )
        rows = await pool.fetch(
            "SELECT stream_id, version, id::text FROM events ORDER BY stream_id, version"
        )
    finally:
        await pool.close()
    for told, items in zip(outcomes, [batch] * 4 + others, strict=True):
        assert told == {item.event_id for item in items}
    versions: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        versions[row["stream_id"]].append(row["version"])
    assert versions == {stream: [1, 2, 3, 4, 5] for stream in streams}
    assert sorted(row["id"] for row in rows if row["id"] in outcomes[0]) == sorted(outcomes[0])


@pytest.mark.parametrize(
    "statement",
    ["UPDATE events SET type = 'X'", "DELETE FROM events", "TRUNCATE events"],
)
async def test_the_log_is_append_only(database_url: str, statement: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await append(conn, "s", "test", [paused("s")], expected_version=0)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
        assert len(await read_stream(conn, "s")) == 1
    finally:
        await conn.close()


async def test_a_reader_waits_for_an_older_open_transaction(database_url: str) -> None:
    """The bug of commanded/eventstore#3: position 1 commits after position 2 was read."""
    pool = await create_pool(database_url, max_size=4)
    try:
        async with pool.acquire() as slow, slow.transaction():
            await append(slow, "slow", "test", [paused("slow")], expected_version=0)
            await append(pool, "fast", "test", [paused("fast")], expected_version=0)
            # The later write is committed, but reading it now would let the earlier one
            # (a lower position, still open) be skipped forever: it must be held back.
            assert await read_after(pool, LogCursor()) == []
        streams = [event.stream_id for event in await read_after(pool, LogCursor())]
        assert streams == ["slow", "fast"]
    finally:
        await pool.close()


# --- Transactions that never append (docs/event-log.md) ------------------------------------


async def write_read_table(conn: Connection, name: str) -> int:
    """A write to a table other than events, as a projection makes: the transaction's xid."""
    await save_checkpoint(conn, name, LogCursor(1, 1))
    return int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))


async def test_a_reader_passes_a_transaction_that_never_appends(database_url: str) -> None:
    """A projector's batch (read tables only, an older xid, still open) holds back no reader."""
    pool = await create_pool(database_url, max_size=4)
    try:
        async with pool.acquire() as projecting, never_appending(projecting):
            await write_read_table(projecting, "projection")
            await append(pool, "fast", "test", [paused("fast")], expected_version=0)
            assert [event.stream_id for event in await read_after(pool, LogCursor())] == ["fast"]
    finally:
        await pool.close()


async def test_a_transaction_that_never_appends_cannot_append(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="never appends"):
            async with never_appending(conn):
                await append(conn, "s", "test", [paused("s")], expected_version=0)
        assert await read_stream(conn, "s") == []
    finally:
        await conn.close()


async def test_a_transaction_declares_it_before_it_writes_and_at_the_top_level(
    database_url: str,
) -> None:
    """Too late once it has an xid (it may have appended already); refused in a savepoint,
    whose rollback would drop the declaration while the transaction goes on."""
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.ActiveSQLTransactionError, match="before the transaction"):
            async with conn.transaction():
                await write_read_table(conn, "late")
                await conn.execute("SELECT deployx_never_appends()")
        with pytest.raises(asyncpg.ActiveSQLTransactionError, match="subtransaction"):
            async with conn.transaction(), conn.transaction():
                await conn.execute("SELECT deployx_never_appends()")
    finally:
        await conn.close()


async def horizon(conn: asyncpg.Connection, snapshot: str) -> int:
    value = await conn.fetchval("SELECT deployx_log_horizon($1::text::pg_snapshot)::text", snapshot)
    return int(value)


async def test_the_horizon_waits_for_any_transaction_it_cannot_see_declared(
    database_url: str,
) -> None:
    """The lock table is read after the snapshot: a transaction running at the snapshot that
    has ended since (whatever it was) counts as one that may have appended."""
    conns = [await asyncpg.connect(database_url) for _ in range(3)]
    appender, projecting, reader = conns
    try:
        async with never_appending(projecting):
            declared = await write_read_table(projecting, "projecting")
            async with appender.transaction():
                appending = await write_read_table(appender, "appender")
                # A later transaction's commit: both open ones are in the snapshot's xip.
                await append(reader, "later", "test", [paused("later")], expected_version=0)
                snapshot = str(await reader.fetchval("SELECT pg_current_snapshot()::text"))
                assert declared < appending
                assert await horizon(reader, snapshot) == appending
        # Both ended since: the one that never appended counts too.
        assert await horizon(reader, snapshot) == declared
        async with never_appending(projecting):
            running = await write_read_table(projecting, "projecting")
            [later] = await append(reader, "later", "test", [paused("later")], expected_version=1)
            snapshot = str(await reader.fetchval("SELECT pg_current_snapshot()::text"))
            assert await horizon(reader, snapshot) > later.tx_id > running
            assert [event.version for event in await read_after(reader, LogCursor())] == [1, 2]
    finally:
        for conn in conns:
            await conn.close()


async def test_readers_never_pass_a_row_that_commits_later_among_transactions_that_never_append(
    database_url: str,
) -> None:
    """Appenders that keep their transactions open for a while, so that they commit out of xid
    order, and transactions that never append on the same pooled connections (one backend
    alternates between both kinds), while readers tail the log: each reader sees every event
    once, in log order."""
    appenders, projectors, readers = 8, 4, 2
    pool = await create_pool(database_url, max_size=appenders + projectors + readers + 2)
    appended: set[str] = set()
    done = asyncio.Event()

    async def appender(number: int) -> None:
        rng = random.Random(number)
        for index in range(120):
            stream = f"s-{number}-{index}"
            async with pool.acquire() as conn, conn.transaction():
                recorded = await append(
                    conn, stream, "test", [paused(stream)] * rng.randint(1, 3), expected_version=0
                )
                await asyncio.sleep(rng.random() * 0.003)
            appended.update(event.id for event in recorded)

    async def projector(number: int) -> None:
        rng = random.Random(1000 + number)
        while not done.is_set():
            async with pool.acquire() as conn, never_appending(conn):
                await write_read_table(conn, f"projector-{number}")
                await asyncio.sleep(rng.random() * 0.005)

    async def reader() -> list[tuple[LogCursor, str]]:
        seen: list[tuple[LogCursor, str]] = []
        cursor = LogCursor()
        while True:
            finished = done.is_set()
            async with pool.acquire() as conn:
                batch = await read_after(conn, cursor, 50)
                # Held back (by any transaction, autovacuum's too) is not the end.
                more = not batch and await has_events_after(conn, cursor)
            seen.extend((LogCursor.of(event), event.id) for event in batch)
            if batch:
                cursor = LogCursor.of(batch[-1])
            elif finished and not more:
                return seen
            else:
                await asyncio.sleep(0.0005)

    try:
        working = [asyncio.create_task(projector(n)) for n in range(projectors)]
        reading = [asyncio.create_task(reader()) for _ in range(readers)]
        await asyncio.gather(*(appender(n) for n in range(appenders)))
        done.set()
        await asyncio.gather(*working)
        results = await asyncio.gather(*reading)
    finally:
        await pool.close()
    for seen in results:
        cursors = [cursor for cursor, _ in seen]
        assert cursors == sorted(cursors), "read out of log order"
        assert len(seen) == len(appended), "a reader passed an event that committed later"
        assert {event_id for _, event_id in seen} == appended


async def test_has_events_past_looks_past_the_lowest_checkpoint(database_url: str) -> None:
    """A reader's held-back check: events past the checkpoint furthest behind, a missing
    checkpoint being the log's start."""
    pool = await create_pool(database_url, max_size=2)
    try:
        assert not await has_events_past(pool, ["a", "b"])  # an empty log
        first = await append(pool, "one", "test", [paused("one")], expected_version=0)
        second = await append(pool, "two", "test", [paused("two")], expected_version=0)
        assert await has_events_past(pool, ["a"])
        await save_checkpoint(pool, "a", LogCursor.of(second[0]))
        assert not await has_events_past(pool, ["a"])
        assert await has_events_past(pool, ["a", "b"])  # b has read nothing yet
        await save_checkpoint(pool, "b", LogCursor.of(first[0]))
        assert await has_events_past(pool, ["b", "a"])  # b is one event behind
        await save_checkpoint(pool, "b", LogCursor.of(second[0]))
        assert not await has_events_past(pool, ["a", "b"])
    finally:
        await pool.close()
