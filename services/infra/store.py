"""The Postgres event store: appends with an expected version, and gap-free reads in log order."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from events.base import Event
from events.codec import RecordedEvent, decode_or_undecodable, encode_data
from services.domain.errors import Conflict, TooLarge
from services.infra.db import Db

# One statement, one round trip: the version check and the insert happen together, and the
# UNIQUE (stream_id, version) constraint settles any race between two appenders.
_APPEND = """
WITH current AS (
    SELECT coalesce(max(version), 0) AS version FROM events WHERE stream_id = $1
)
INSERT INTO events (id, stream_id, version, type, category, schema_version, data, metadata)
SELECT e.id, $1, current.version + e.ord, e.type, $2, e.schema_version, e.data, $3::jsonb
FROM current,
     unnest($4::uuid[], $5::text[], $6::int[], $7::jsonb[])
         WITH ORDINALITY AS e(id, type, schema_version, data, ord)
WHERE $8::int IS NULL OR current.version = $8::int
RETURNING id::text, version, position, tx_id::text::bigint, recorded_at
"""

_COLUMNS = """
    id::text, stream_id, version, position, tx_id::text::bigint AS tx_id, category, type,
    schema_version, data::text, metadata::text, recorded_at
"""

# The gap-free rule of every reader of the log (docs/event-log.md): only rows of transactions
# older than every transaction still running that may append (schema.sql deployx_log_horizon),
# so a row that commits later can never get a lower (tx_id, position) than what a reader has
# already passed. A sub-select: computed once per statement, with the statement's snapshot.
LOG_HORIZON = "(SELECT deployx_log_horizon(pg_current_snapshot()))"

# Ordered by the table's columns, not the output's `tx_id` (a bigint): only then does the
# events_log_order index give the order, instead of a sort of everything after the cursor.
_READ_AFTER = f"""
SELECT {_COLUMNS} FROM events
WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)
  AND tx_id < {LOG_HORIZON}
ORDER BY events.tx_id, events.position
LIMIT $3
"""

_READ_STREAM = (
    f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version"
)

# NOTIFY channels: schema.sql's trigger wakes log readers; the projector announces checkpoints.
EVENTS_CHANNEL = "deployx_events"
PROJECTED_CHANNEL = "deployx_projected"

# An event's data is bounded when it is written, well under NATS's 1 MiB max_payload, so that
# every event in the log can be published (relay) and carried (executors, live feed).
MAX_EVENT_BYTES = 512 * 1024

_metadata_encoder = msgspec.json.Encoder()
_metadata_decoder = msgspec.json.Decoder(dict[str, Any])

Connection = asyncpg.Connection | PoolConnectionProxy
# An append "at any version" (expected_version None) races only with other such appends.
ANY_VERSION_ATTEMPTS = 5


class ConcurrencyError(Conflict):
    """Another writer appended to the stream since the caller read it."""

    def __init__(self, stream_id: str, expected: int | None, actual: int) -> None:
        super().__init__(
            f"stream {stream_id} is at version {actual}, not the expected {expected}; "
            "it changed meanwhile, read it again and retry",
            {"stream_id": stream_id, "expected_version": expected, "actual_version": actual},
        )
        self.stream_id, self.expected, self.actual = stream_id, expected, actual


class DuplicateEvent(Conflict):
    """An event with this id is in the log already: the same command was applied before."""


class LogCursor(msgspec.Struct, frozen=True, order=True):
    """A place in the log: everything up to and including (tx_id, position) has been read."""

    tx_id: int = 0
    position: int = 0

    @classmethod
    def of(cls, event: RecordedEvent) -> LogCursor:
        return cls(event.tx_id, event.position)


@contextlib.asynccontextmanager
async def never_appending(conn: Connection) -> AsyncIterator[None]:
    """A transaction that writes only read tables, never events: it says so before it writes
    (schema.sql deployx_never_appends), so that readers of the log need not wait for it.
    Inside a transaction already, only a savepoint: the outermost transaction decides."""
    outermost = not conn.is_in_transaction()
    async with conn.transaction():
        if outermost:
            await conn.execute("SELECT deployx_never_appends()")
        yield


def new_event_id() -> str:
    return str(uuid.uuid4())


async def append(
    db: Db,
    stream_id: str,
    category: str,
    events: Sequence[Event],
    *,
    expected_version: int | None,
    metadata: dict[str, Any] | None = None,
    event_ids: Sequence[str] | None = None,
) -> list[RecordedEvent]:
    """Appends events to a stream at expected_version (None: at whatever version it has)."""
    ids = list(event_ids) if event_ids is not None else [new_event_id() for _ in events]
    meta = metadata or {}
    for attempt in range(ANY_VERSION_ATTEMPTS):
        try:
            return await _append_once(db, stream_id, category, events, expected_version, meta, ids)
        except ConcurrencyError:
            if expected_version is not None or attempt == ANY_VERSION_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


async def _append_once(
    db: Db,
    stream_id: str,
    category: str,
    events: Sequence[Event],
    expected_version: int | None,
    meta: dict[str, Any],
    ids: list[str],
) -> list[RecordedEvent]:
    try:
        rows = await insert_rows(
            db, stream_id, category, events, expected_version, meta, ids, encode_bounded(events)
        )
    except asyncpg.UniqueViolationError as exc:
        raise await refused(db, exc, stream_id, expected_version) from None
    if not rows:
        raise ConcurrencyError(stream_id, expected_version, await stream_version(db, stream_id))
    return recorded_rows(rows, stream_id, category, events, meta)


async def insert_rows(
    db: Db,
    stream_id: str,
    category: str,
    events: Sequence[Event],
    expected_version: int | None,
    meta: dict[str, Any],
    ids: list[str],
    data: list[str],
) -> list[asyncpg.Record]:
    """The append statement alone: the rows written, none if the stream is not at
    expected_version; a race or a repeated event id raises UniqueViolationError."""
    return await db.fetch(
        _APPEND,
        stream_id,
        category,
        _metadata_encoder.encode(meta).decode(),
        ids,
        [event.type for event in events],
        [event.schema_version for event in events],
        data,
        expected_version,
    )


async def refused(
    db: Db, exc: asyncpg.UniqueViolationError, stream_id: str, expected_version: int | None
) -> Conflict:
    """What a unique violation of an append means: the events are in the log already, or
    another writer took the stream's next version (read once the statement is undone)."""
    if exc.constraint_name == "events_id_key":
        return DuplicateEvent("these events were appended before")
    return ConcurrencyError(stream_id, expected_version, await stream_version(db, stream_id))


def recorded_rows(
    rows: Sequence[asyncpg.Record],
    stream_id: str,
    category: str,
    events: Sequence[Event],
    meta: dict[str, Any],
) -> list[RecordedEvent]:
    rows = sorted(rows, key=lambda row: int(row["version"]))
    return [
        RecordedEvent(
            id=row["id"],
            stream_id=stream_id,
            version=row["version"],
            position=row["position"],
            tx_id=row["tx_id"],
            category=category,
            recorded_at=row["recorded_at"],
            event=event,
            metadata=meta,
        )
        for row, event in zip(rows, events, strict=True)
    ]


def encode_bounded(events: Sequence[Event]) -> list[str]:
    """Each event's stored JSON; TooLarge (nothing is written) if one exceeds MAX_EVENT_BYTES."""
    encoded = []
    for event in events:
        data = encode_data(event)
        if len(data) > MAX_EVENT_BYTES:
            raise TooLarge(
                f"{event.type} would take {len(data)} bytes in the log, more than its "
                f"{MAX_EVENT_BYTES}: name fewer devices or send a smaller payload",
                {"event_type": event.type, "size": len(data), "limit": MAX_EVENT_BYTES},
            )
        encoded.append(data.decode())
    return encoded


async def stream_version(db: Db, stream_id: str) -> int:
    version = await db.fetchval(
        "SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1", stream_id
    )
    return int(version)


async def read_stream(db: Db, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
    """The stream's events in order; only those past after_version when it is given."""
    return [to_recorded(row) for row in await db.fetch(_READ_STREAM, stream_id, after_version)]


async def read_after(db: Db, cursor: LogCursor, limit: int = 1000) -> list[RecordedEvent]:
    """The next events after cursor in log order; never skips one that commits later."""
    rows = await db.fetch(_READ_AFTER, str(cursor.tx_id), cursor.position, limit)
    return [to_recorded(row) for row in rows]


def to_recorded(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        id=row["id"],
        stream_id=row["stream_id"],
        version=row["version"],
        position=row["position"],
        tx_id=row["tx_id"],
        category=row["category"],
        recorded_at=row["recorded_at"],
        event=decode_or_undecodable(row["type"], row["data"], row["schema_version"]),
        metadata=_metadata_decoder.decode(row["metadata"]),
    )


async def read_positions(db: Db, positions: Sequence[int]) -> list[RecordedEvent]:
    """The events at these positions, in log order."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM events WHERE position = ANY($1::bigint[]) "
        "ORDER BY tx_id, position",
        list(positions),
    )
    return [to_recorded(row) for row in rows]


async def read_ids(db: Db, event_ids: Sequence[str]) -> list[RecordedEvent]:
    """The events with these ids that are in the log, in log order."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM events WHERE id = ANY($1::uuid[]) ORDER BY tx_id, position",
        list(event_ids),
    )
    return [to_recorded(row) for row in rows]


async def has_events_after(db: Db, cursor: LogCursor) -> bool:
    """Whether committed events lie past cursor, visible to read_after yet or not."""
    return bool(
        await db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM events WHERE (tx_id, position) > ($1::text::xid8, $2))",
            str(cursor.tx_id),
            cursor.position,
        )
    )


_EVENTS_AFTER_CHECKPOINTS = """
SELECT EXISTS (SELECT 1 FROM events WHERE (tx_id, position) > (
    SELECT coalesce(c.tx_id, '0'::xid8), coalesce(c.position, 0)
    FROM unnest($1::text[]) AS n(name) LEFT JOIN checkpoints c ON c.name = n.name
    ORDER BY 1, 2 LIMIT 1
))
"""


async def has_events_past(db: Db, checkpoints: Sequence[str]) -> bool:
    """Whether committed events lie past the lowest of these saved checkpoints (a missing one is
    the log's start): load_checkpoint and has_events_after in one round trip."""
    return bool(await db.fetchval(_EVENTS_AFTER_CHECKPOINTS, list(checkpoints)))


async def read_task_history(
    db: Db, task_id: str, after: LogCursor | None = None
) -> list[RecordedEvent]:
    """Every event about one task (its own stream and its executions'), in log order."""
    cursor = after or LogCursor()
    rows = await db.fetch(
        f"""
        SELECT {_COLUMNS} FROM events
        WHERE data ->> 'task_id' = $1 AND (tx_id, position) > ($2::text::xid8, $3::bigint)
        ORDER BY tx_id, position
        """,
        task_id,
        str(cursor.tx_id),
        cursor.position,
    )
    return [to_recorded(row) for row in rows]


class StreamAppend(msgspec.Struct, frozen=True):
    """One event for one stream at an expected version, in a batch for append_many."""

    stream_id: str
    category: str
    expected_version: int
    event: Event
    event_id: str


# Each event goes in only if its stream is still at the expected version; ON CONFLICT DO NOTHING
# drops one that lost a race instead of failing the batch. Streams are locked in one order so
# that two batches over the same streams cannot deadlock.
_APPEND_MANY = """
INSERT INTO events (id, stream_id, version, type, category, schema_version, data, metadata)
SELECT b.id, b.stream_id, b.expected + 1, b.type, b.category, b.schema_version, b.data, $8::jsonb
FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::int[], $7::jsonb[])
    AS b(id, stream_id, expected, type, category, schema_version, data)
WHERE (SELECT coalesce(max(e.version), 0) FROM events e WHERE e.stream_id = b.stream_id)
    = b.expected
ORDER BY b.stream_id
ON CONFLICT DO NOTHING
RETURNING id::text, stream_id, version, position, tx_id::text::bigint, recorded_at
"""


async def append_many(
    db: Db, items: Sequence[StreamAppend], metadata: dict[str, Any] | None = None
) -> list[RecordedEvent]:
    """Appends one event to each of many streams in one round trip; returns those that went in.

    An item whose stream moved past its expected version is left out, not an error: the caller
    reads the stream's new state and decides again.
    """
    if len({item.stream_id for item in items}) != len(items):
        raise ValueError("append_many takes at most one event per stream")
    meta = metadata or {}
    rows = await db.fetch(
        _APPEND_MANY,
        [item.event_id for item in items],
        [item.stream_id for item in items],
        [item.expected_version for item in items],
        [item.event.type for item in items],
        [item.category for item in items],
        [item.event.schema_version for item in items],
        encode_bounded([item.event for item in items]),
        _metadata_encoder.encode(meta).decode(),
    )
    by_id = {item.event_id: item for item in items}
    return [
        RecordedEvent(
            id=row["id"],
            stream_id=row["stream_id"],
            version=row["version"],
            position=row["position"],
            tx_id=row["tx_id"],
            category=by_id[row["id"]].category,
            recorded_at=row["recorded_at"],
            event=by_id[row["id"]].event,
            metadata=meta,
        )
        for row in rows
    ]


class StreamEvent(msgspec.Struct, frozen=True):
    """One event for one stream at whatever version it has, in a batch for append_each; its
    id makes it idempotent (an event whose id is in the log already is not written again)."""

    stream_id: str
    category: str
    event: Event
    event_id: str


# Each event goes at the end of its stream; ON CONFLICT DO NOTHING skips an id the log has
# already, and one whose version another writer took meanwhile (the caller tries it again).
_APPEND_EACH = """
INSERT INTO events (id, stream_id, version, type, category, schema_version, data, metadata)
SELECT b.id, b.stream_id,
    (SELECT coalesce(max(e.version), 0) FROM events e WHERE e.stream_id = b.stream_id) + 1,
    b.type, b.category, b.schema_version, b.data, $7::jsonb
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::jsonb[])
    AS b(id, stream_id, type, category, schema_version, data)
ORDER BY b.stream_id
ON CONFLICT DO NOTHING
RETURNING id::text
"""
# The same for streams that most likely have no event yet (devices never seen): each at version
# 1, without looking its stream up; one whose stream has events conflicts and is tried again.
_APPEND_FIRST = """
INSERT INTO events (id, stream_id, version, type, category, schema_version, data, metadata)
SELECT b.id, b.stream_id, 1, b.type, b.category, b.schema_version, b.data, $7::jsonb
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::jsonb[])
    AS b(id, stream_id, type, category, schema_version, data)
ORDER BY b.stream_id
ON CONFLICT DO NOTHING
RETURNING id::text
"""
_IN_LOG = "SELECT id::text FROM events WHERE id = ANY ($1::uuid[])"


async def append_each(
    db: Db,
    items: Sequence[StreamEvent],
    metadata: dict[str, Any] | None = None,
    *,
    new_streams: bool = False,
) -> set[str]:
    """Appends one event to each of many streams at their current versions, in one round trip
    (a few more if other writers race for the same streams); returns the ids of those now in
    the log, written now or before. An event still racing after a few tries is left out: the
    caller offers it again later.

    With new_streams (most of the streams are likely empty), the first statement writes each
    event at version 1 without reading its stream, and those that conflict go on as above.
    """
    if len({item.stream_id for item in items}) != len(items):
        raise ValueError("append_each takes at most one event per stream")
    meta = _metadata_encoder.encode(metadata or {}).decode()
    encoded = encode_bounded([item.event for item in items])
    data = {item.event_id: json for item, json in zip(items, encoded, strict=True)}
    in_log: set[str] = set()
    todo = list(items)
    for attempt in range(ANY_VERSION_ATTEMPTS + new_streams):
        if not todo:
            break
        rows = await db.fetch(
            _APPEND_FIRST if new_streams and attempt == 0 else _APPEND_EACH,
            [item.event_id for item in todo],
            [item.stream_id for item in todo],
            [item.event.type for item in todo],
            [item.category for item in todo],
            [item.event.schema_version for item in todo],
            [data[item.event_id] for item in todo],
            meta,
        )
        written = {row["id"] for row in rows}
        left = [item.event_id for item in todo if item.event_id not in written]
        before = {row["id"] for row in await db.fetch(_IN_LOG, left)} if left else set()
        in_log |= written | before
        todo = [item for item in todo if item.event_id not in in_log]
    return in_log


async def load_checkpoint(db: Db, name: str) -> LogCursor:
    row = await db.fetchrow(
        "SELECT tx_id::text::bigint AS tx_id, position FROM checkpoints WHERE name = $1", name
    )
    return LogCursor(row["tx_id"], row["position"]) if row else LogCursor()


async def save_checkpoint(db: Db, name: str, cursor: LogCursor) -> None:
    await db.execute(
        """
        INSERT INTO checkpoints (name, tx_id, position, updated_at)
        VALUES ($1, $2::text::xid8, $3, now())
        ON CONFLICT (name) DO UPDATE SET tx_id = EXCLUDED.tx_id,
            position = EXCLUDED.position, updated_at = EXCLUDED.updated_at
        """,
        name,
        str(cursor.tx_id),
        cursor.position,
    )
