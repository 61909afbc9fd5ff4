"""The audit chain in PostgreSQL: events as sealed, the seals, and the chain's head."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from services.domain.audit_chain import GENESIS, Seal, SealedEvent, recorded_text
from services.infra.db import Db
from services.infra.store import LOG_HORIZON, LogCursor


def _columns(table: str = "") -> str:
    """An event's columns as sealed (table: a qualifier, "e." for a join)."""
    return f"""
    {table}id::text AS id, {table}stream_id AS stream_id, {table}version AS version,
    {table}position AS position, {table}tx_id::text::bigint AS tx_id, {table}type AS type,
    {table}data::text AS data, {table}metadata::text AS metadata, {table}recorded_at AS recorded_at
"""


_EVENT_COLUMNS = _columns()
# The same gap-free rule as store.read_after: only rows of transactions older than every
# transaction still running, so an event that commits late is never sealed out of order.
_UNSEALED = f"""
SELECT {_EVENT_COLUMNS} FROM events
WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)
  AND tx_id < {LOG_HORIZON}
ORDER BY tx_id, position
LIMIT $3
"""
# Every committed event in log order, for verify: no holding back, it reads what is there.
_IN_LOG_ORDER = f"""
SELECT {_EVENT_COLUMNS} FROM events
WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)
ORDER BY tx_id, position
LIMIT $3
"""
# sealed_at is the clock at the insert (not the transaction's start), so that seal lag is
# never less than the time the sealer really took.
_INSERT_SEALS = """
INSERT INTO audit_chain (seq, position, event_id, hash, sealed_at)
SELECT s.*, clock_timestamp() FROM unnest($1::bigint[], $2::bigint[], $3::uuid[], $4::bytea[]) s
"""


class LogEvent(msgspec.Struct, frozen=True):
    """An event as sealed, with its place in log order."""

    cursor: LogCursor
    event: SealedEvent


def _log_event(row: asyncpg.Record) -> LogEvent:
    event = SealedEvent(
        id=row["id"],
        stream_id=row["stream_id"],
        version=row["version"],
        position=row["position"],
        type=row["type"],
        data=msgspec.Raw(row["data"].encode()),
        metadata=msgspec.Raw(row["metadata"].encode()),
        recorded_at=recorded_text(row["recorded_at"]),
    )
    return LogEvent(LogCursor(row["tx_id"], row["position"]), event)


async def read_unsealed(db: Db, cursor: LogCursor, limit: int) -> list[LogEvent]:
    rows = await db.fetch(_UNSEALED, str(cursor.tx_id), cursor.position, limit)
    return [_log_event(row) for row in rows]


async def read_log(db: Db, cursor: LogCursor, limit: int) -> list[LogEvent]:
    rows = await db.fetch(_IN_LOG_ORDER, str(cursor.tx_id), cursor.position, limit)
    return [_log_event(row) for row in rows]


async def insert_seals(db: Db, seals: list[Seal]) -> None:
    await db.execute(
        _INSERT_SEALS,
        [seal.seq for seal in seals],
        [seal.position for seal in seals],
        [seal.event_id for seal in seals],
        [seal.hash for seal in seals],
    )


class ChainHead(msgspec.Struct, frozen=True):
    seq: int
    position: int | None
    hash: bytes
    sealed_at: datetime | None = None


async def head(db: Db) -> ChainHead:
    """The last seal, or the empty chain (seq 0, the zero hash)."""
    row = await db.fetchrow(
        "SELECT seq, position, hash, sealed_at FROM audit_chain ORDER BY seq DESC LIMIT 1"
    )
    if row is None:
        return ChainHead(0, None, GENESIS)
    return ChainHead(row["seq"], row["position"], bytes(row["hash"]), row["sealed_at"])


async def seals_after(db: Db, seq: int, limit: int) -> list[Seal]:
    rows = await db.fetch(
        "SELECT seq, position, event_id::text, hash FROM audit_chain WHERE seq > $1 "
        "ORDER BY seq LIMIT $2",
        seq,
        limit,
    )
    return [
        Seal(seq=r["seq"], position=r["position"], event_id=r["event_id"], hash=bytes(r["hash"]))
        for r in rows
    ]


async def seal_at(db: Db, position: int) -> Seal | None:
    row = await db.fetchrow(
        "SELECT seq, position, event_id::text, hash FROM audit_chain WHERE position = $1 "
        "ORDER BY seq LIMIT 1",
        position,
    )
    if row is None:
        return None
    return Seal(
        seq=row["seq"], position=row["position"], event_id=row["event_id"], hash=bytes(row["hash"])
    )


async def event_present(db: Db, event_id: str) -> bool:
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM events WHERE id = $1)", event_id))


async def event_sealed(db: Db, event_id: str) -> bool:
    return bool(
        await db.fetchval("SELECT EXISTS (SELECT 1 FROM audit_chain WHERE event_id = $1)", event_id)
    )


async def sealed_events(
    db: Db, after_seq: int, limit: int
) -> list[tuple[Seal, SealedEvent | None]]:
    """Seals after after_seq with the event each names (None where it is gone), in seq order."""
    rows = await db.fetch(
        f"""
        SELECT c.seq, c.position AS sealed_position, c.event_id::text AS sealed_id, c.hash,
               e.id IS NOT NULL AS present, {_columns("e.")}
        FROM audit_chain c LEFT JOIN events e ON e.id = c.event_id
        WHERE c.seq > $1 ORDER BY c.seq LIMIT $2
        """,
        after_seq,
        limit,
    )
    found: list[tuple[Seal, SealedEvent | None]] = []
    for row in rows:
        seal = Seal(
            seq=row["seq"],
            position=row["sealed_position"],
            event_id=row["sealed_id"],
            hash=bytes(row["hash"]),
        )
        found.append((seal, _log_event(row).event if row["present"] else None))
    return found


async def unsealed_count(db: Db, cursor: LogCursor) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM events WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)",
            str(cursor.tx_id),
            cursor.position,
        )
    )
