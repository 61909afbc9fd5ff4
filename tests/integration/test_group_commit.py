"""Group commit on a real PostgreSQL: appends queued together are written in one transaction,
each caller gets its own events or its own error, and one at fault fails no other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from events.base import Event
from events.device import DeviceRegistered
from events.task import TaskPaused
from services.infra.db import create_pool
from services.infra.group_commit import GroupCommit
from services.infra.store import ConcurrencyError, DuplicateEvent, append

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(database_url, max_size=4)
    try:
        yield created
    finally:
        await created.close()


def registered(device: str) -> list[Event]:
    return [DeviceRegistered(device_id=device, registered_at=NOW)]


async def tx_ids(pool: asyncpg.Pool, streams: list[str]) -> set[int]:
    rows = await pool.fetch(
        "SELECT DISTINCT tx_id::text::bigint AS tx FROM events WHERE stream_id = ANY($1::text[])",
        streams,
    )
    return {row["tx"] for row in rows}


async def test_appends_queued_together_share_one_commit_and_each_gets_its_own_events(
    pool: asyncpg.Pool,
) -> None:
    group = GroupCommit(pool)
    streams = [f"device-{n}" for n in range(20)]

    answers = await asyncio.gather(
        *(
            group.append(stream, "devices", registered(stream), expected_version=0)
            for stream in streams
        )
    )

    assert (group.groups, group.appends) == (1, 20)
    assert [answer[0].stream_id for answer in answers] == streams
    assert all(answer[0].version == 1 for answer in answers)
    assert len({answer[0].position for answer in answers}) == 20
    # What each caller was told is what the log holds, all from one transaction.
    stored = await pool.fetch("SELECT id::text, stream_id, position FROM events ORDER BY position")
    assert [(row["id"], row["stream_id"], row["position"]) for row in stored] == [
        (answer[0].id, answer[0].stream_id, answer[0].position) for answer in answers
    ]
    assert len(await tx_ids(pool, streams)) == 1


async def test_an_append_at_fault_fails_alone_and_the_rest_of_its_group_commits(
    pool: asyncpg.Pool,
) -> None:
    taken = await append(pool, "device-old", "devices", registered("old"), expected_version=0)
    group = GroupCommit(pool)
    fine = [f"device-{n}" for n in range(6)]

    results = await asyncio.gather(
        *(group.append(s, "devices", registered(s), expected_version=0) for s in fine[:3]),
        # Expects a stream that already has an event to be empty: the version check says no.
        group.append("device-old", "devices", registered("old"), expected_version=0),
        # Repeats an event id the log has: the unique index says no, inside the statement.
        group.append(
            "device-again",
            "devices",
            registered("again"),
            expected_version=0,
            event_ids=[taken[0].id],
        ),
        *(group.append(s, "devices", registered(s), expected_version=0) for s in fine[3:]),
        return_exceptions=True,
    )

    assert group.groups == 1
    stale, repeated = results[3], results[4]
    assert isinstance(stale, ConcurrencyError) and stale.actual == 1, stale
    assert isinstance(repeated, DuplicateEvent), repeated
    written = [result for n, result in enumerate(results) if n not in (3, 4)]
    assert [r[0].stream_id for r in written if isinstance(r, list)] == fine
    assert len(await tx_ids(pool, fine)) == 1
    assert await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 'device-again'") == 0
    assert await pool.fetchval("SELECT count(*) FROM events") == 1 + len(fine)


async def test_two_appends_to_one_stream_go_in_order_in_two_groups(pool: asyncpg.Pool) -> None:
    group = GroupCommit(pool)
    first = group.append("device-x", "devices", registered("x"), expected_version=0)
    paused: list[Event] = [TaskPaused(task_id="device-x", paused_at=NOW)]
    second = group.append("device-x", "devices", paused, expected_version=1)
    any_version = group.append("device-x", "devices", paused, expected_version=None)

    one, two, three = await asyncio.gather(first, second, any_version)

    assert [one[0].version, two[0].version, three[0].version] == [1, 2, 3]
    assert group.groups == 3
