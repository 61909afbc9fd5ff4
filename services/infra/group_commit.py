"""Group commit: appends that arrive while one is being written go into the log together.

Each request's append waits in a queue; one writer takes everything queued, inserts it with one
statement in one transaction, and answers each caller with its own events or its own error.
While that commit is on its way the next group gathers, so under load one commit (one WAL
flush) serves many requests, and alone a request waits for nothing but its own commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from events.base import Event
from events.codec import RecordedEvent
from services.domain.errors import Conflict
from services.infra.clock import more_within
from services.infra.store import (
    ANY_VERSION_ATTEMPTS,
    ConcurrencyError,
    Connection,
    encode_bounded,
    insert_rows,
    new_event_id,
    recorded_rows,
    refused,
    stream_version,
)

# The most appends one group takes: bounds a commit's size and the time a transaction holds
# back log readers (docs/event-log.md).
MAX_GROUP = 256
# How long the writer keeps its connection after its last group, for the next one: requests
# come in waves (each answered after the projector's round), and a checkout with the pool's
# reset query per wave is a round trip each.
LINGER = 0.1

_encoder = msgspec.json.Encoder()

# Every item's events in one statement: each stream's current version once, then only the
# items whose stream is where they expect it (or that take any version) go in, in queue order.
_APPEND_GROUP = """
WITH b AS (
    SELECT * FROM unnest($1::int[], $2::text[], $3::int[], $4::int[], $5::uuid[], $6::text[],
        $7::text[], $8::int[], $9::jsonb[], $10::jsonb[])
        AS b(item, stream_id, expected, ord, id, type, category, schema_version, data, metadata)
), current AS (
    SELECT s.stream_id,
        (SELECT coalesce(max(e.version), 0) FROM events e WHERE e.stream_id = s.stream_id)
            AS version
    FROM (SELECT DISTINCT stream_id FROM b) AS s
)
INSERT INTO events (id, stream_id, version, type, category, schema_version, data, metadata)
SELECT b.id, b.stream_id, c.version + b.ord, b.type, b.category, b.schema_version, b.data,
    b.metadata
FROM b JOIN current c USING (stream_id)
WHERE b.expected IS NULL OR b.expected = c.version
ORDER BY b.item, b.ord
RETURNING id::text, version, position, tx_id::text::bigint, recorded_at
"""


class _Item(msgspec.Struct):
    stream_id: str
    category: str
    events: Sequence[Event]
    expected_version: int | None
    metadata: dict[str, Any]
    ids: list[str]
    data: list[str]
    answer: asyncio.Future[list[RecordedEvent]]
    # Set by the writer; given to the caller only once the group's transaction committed.
    recorded: list[RecordedEvent] | None = None
    error: Conflict | None = None


class GroupCommit:
    """Appends of many callers, written a group per transaction; one writer at a time."""

    def __init__(self, pool: asyncpg.Pool, max_group: int = MAX_GROUP) -> None:
        self._pool = pool
        self._max_group = max_group
        self._queue: list[_Item] = []
        self._writer: asyncio.Task[None] | None = None
        self._more = asyncio.Event()  # set on every append: wakes a lingering writer
        self.groups = 0  # how many commits wrote how many appends: for tests and benchmarks
        self.appends = 0

    async def append(
        self,
        stream_id: str,
        category: str,
        events: Sequence[Event],
        *,
        expected_version: int | None,
        metadata: dict[str, Any] | None = None,
        event_ids: Sequence[str] | None = None,
    ) -> list[RecordedEvent]:
        """As store.append: the events at expected_version (None: at whatever version), with
        the same errors, but committed together with whatever else is queued."""
        ids = list(event_ids) if event_ids is not None else [new_event_id() for _ in events]
        data = encode_bounded(events)  # TooLarge is this caller's alone
        for attempt in range(ANY_VERSION_ATTEMPTS):
            item = _Item(
                stream_id=stream_id,
                category=category,
                events=events,
                expected_version=expected_version,
                metadata=metadata or {},
                ids=ids,
                data=data,
                answer=asyncio.get_running_loop().create_future(),
            )
            self._queue.append(item)
            self._more.set()
            if self._writer is None or self._writer.done():
                self._writer = asyncio.create_task(self._write())
            try:
                return await item.answer
            except ConcurrencyError:
                if expected_version is not None or attempt == ANY_VERSION_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _write(self) -> None:
        while self._queue:
            group = self._take()
            try:
                # One connection for as long as groups keep coming: a checkout (and the pool's
                # reset query on its return) per burst, not per commit.
                async with self._pool.acquire() as conn:
                    while True:
                        await _write_group(conn, group)
                        self._answer(group)
                        if not await more_within(self._more, self._queue, LINGER):
                            break
                        group = self._take()
            except BaseException as exc:
                # Nothing of the group is stored (or, if the commit's answer was lost, nobody
                # can tell): every caller gets the error, as a lone append would. The next
                # group takes a fresh connection.
                for item in group:
                    if not item.answer.done():
                        item.answer.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

    def _answer(self, group: list[_Item]) -> None:
        """Each caller its own events or its own error, once the group's commit is done."""
        for item in group:
            if item.answer.done():  # its caller went away
                continue
            if item.error is not None:
                item.answer.set_exception(item.error)
            else:
                assert item.recorded is not None
                item.answer.set_result(item.recorded)
        self.groups += 1
        self.appends += len(group)

    def _take(self) -> list[_Item]:
        """The queue's head: at most max_group items, one per stream (a second append to the
        same stream waits for the next group, so that it sees the first one's version)."""
        group: list[_Item] = []
        streams: set[str] = set()
        rest: list[_Item] = []
        for item in self._queue:
            if len(group) < self._max_group and item.stream_id not in streams:
                group.append(item)
                streams.add(item.stream_id)
            else:
                rest.append(item)
        self._queue = rest
        return group


async def _write_group(conn: Connection, group: list[_Item]) -> None:
    """Commits the group. One statement for all of it, which is its own transaction (no
    BEGIN, savepoint or COMMIT: four round trips a group fewer); if it fails on a unique key
    (a duplicate event id, a concurrent writer's version), nothing of it is stored, and each
    item goes again on its own, in a savepoint of one transaction, so that only the ones at
    fault fail."""
    try:
        rows = await conn.fetch(_APPEND_GROUP, *_columns(group))
    except asyncpg.UniqueViolationError:
        async with conn.transaction():
            for item in group:
                await _write_alone(conn, item)
        return
    by_id = {row["id"]: row for row in rows}
    for item in group:
        if item.ids[0] in by_id:
            item.recorded = [_recorded(item, by_id[i], n) for n, i in enumerate(item.ids)]
        else:  # its stream was not at the version it expected
            actual = await stream_version(conn, item.stream_id)
            item.error = ConcurrencyError(item.stream_id, item.expected_version, actual)


async def _write_alone(conn: Connection, item: _Item) -> None:
    args = (item.stream_id, item.category, item.events, item.expected_version, item.metadata)
    try:
        async with conn.transaction():
            rows = await insert_rows(conn, *args, item.ids, item.data)
    except asyncpg.UniqueViolationError as exc:
        item.error = await refused(conn, exc, item.stream_id, item.expected_version)
        return
    if not rows:
        actual = await stream_version(conn, item.stream_id)
        item.error = ConcurrencyError(item.stream_id, item.expected_version, actual)
        return
    item.recorded = recorded_rows(rows, item.stream_id, item.category, item.events, item.metadata)


def _recorded(item: _Item, row: asyncpg.Record, n: int) -> RecordedEvent:
    return RecordedEvent(
        id=row["id"],
        stream_id=item.stream_id,
        version=row["version"],
        position=row["position"],
        tx_id=row["tx_id"],
        category=item.category,
        recorded_at=row["recorded_at"],
        event=item.events[n],
        metadata=item.metadata,
    )


def _columns(group: list[_Item]) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(10)]
    for number, item in enumerate(group):
        meta = _encoder.encode(item.metadata).decode()
        for ord_, (event, event_id, data) in enumerate(
            zip(item.events, item.ids, item.data, strict=True), start=1
        ):
            row = (
                number,
                item.stream_id,
                item.expected_version,
                ord_,
                event_id,
                event.type,
                item.category,
                event.schema_version,
                data,
                meta,
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
    return columns
