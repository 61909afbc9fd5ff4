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
    DuplicateEvent,
    LogCursor,
    StreamEvent,
    append,
    append_each,
    read_after,
    read_stream,
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
