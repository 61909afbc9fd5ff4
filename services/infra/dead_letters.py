"""Dead letters: events a consumer of the log could not handle, set aside so it carries on."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import asyncpg
import msgspec

from events.codec import RecordedEvent, Undecodable
from services.infra.db import Db

# Failing this many times in a row (each try alone in its savepoint), an event is set aside:
# fewer would take a passing glitch for a poison event, more would stall everyone for longer.
ATTEMPTS_BEFORE_SETTING_ASIDE = 3
# What an error message may take of a row and of an API answer.
_ERROR_LIMIT = 2000
_COLUMNS = """
    id, consumer, event_id::text, position, stream_id, event_type, error, attempts, created_at,
    updated_at, retry_requested_at, resolved_at
"""


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    consumer: str
    event_id: str
    position: int
    stream_id: str
    event_type: str
    error: str
    attempts: int
    created_at: datetime
    updated_at: datetime
    retry_requested_at: datetime | None
    resolved_at: datetime | None


def describe_failure(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:_ERROR_LIMIT]


class FailureCounter:
    """Counts each event's failures in a row, in memory: one consumer process's patience."""

    def __init__(self, limit: int = ATTEMPTS_BEFORE_SETTING_ASIDE) -> None:
        self._limit = limit
        self._failures: dict[str, int] = {}

    def failed(self, event_id: str) -> bool:
        """Notes one more failure; True once the event has used up its attempts."""
        count = self._failures.get(event_id, 0) + 1
        self._failures[event_id] = count
        return count >= self._limit

    def forget(self, event_id: str) -> None:
        self._failures.pop(event_id, None)


def stored_type(recorded: RecordedEvent) -> str:
    event = recorded.event
    return event.event_type if isinstance(event, Undecodable) else recorded.type


async def set_aside(db: Db, consumer: str, recorded: RecordedEvent, error: str) -> None:
    await set_aside_at(
        db,
        consumer,
        event_id=recorded.id,
        position=recorded.position,
        stream_id=recorded.stream_id,
        event_type=stored_type(recorded),
        error=error,
    )


async def set_aside_at(
    db: Db,
    consumer: str,
    *,
    event_id: str,
    position: int,
    stream_id: str,
    event_type: str,
    error: str,
) -> None:
    """Records (or counts again) a dead letter of consumer; a retry request on it is dropped."""
    await db.execute(
        """
        INSERT INTO dead_letters (consumer, event_id, position, stream_id, event_type, error)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (consumer, event_id) DO UPDATE SET error = EXCLUDED.error,
            attempts = dead_letters.attempts + 1, updated_at = now(),
            retry_requested_at = NULL, resolved_at = NULL
        """,
        consumer,
        event_id,
        position,
        stream_id,
        event_type,
        error[:_ERROR_LIMIT],
    )


async def parked_streams(db: Db, consumer: str, stream_ids: Iterable[str]) -> set[str]:
    """Those of stream_ids with an open dead letter of this consumer: their later events wait."""
    rows = await db.fetch(
        """
        SELECT DISTINCT stream_id FROM dead_letters
        WHERE consumer = $1 AND resolved_at IS NULL AND stream_id = ANY($2::text[])
        """,
        consumer,
        list(set(stream_ids)),
    )
    return {row["stream_id"] for row in rows}


async def any_parked(db: Db, consumers: Iterable[str], stream_ids: Iterable[str]) -> bool:
    """Whether any of stream_ids has an open dead letter of any of consumers."""
    return bool(
        await db.fetchval(
            """
            SELECT EXISTS (SELECT 1 FROM dead_letters WHERE consumer = ANY($1::text[])
                AND resolved_at IS NULL AND stream_id = ANY($2::text[]))
            """,
            list(consumers),
            list(set(stream_ids)),
        )
    )


async def retry_requested(db: Db, consumers: Iterable[str]) -> list[DeadLetter]:
    """Open dead letters of these consumers that an admin asked to try again, oldest first."""
    rows = await db.fetch(
        f"""
        SELECT {_COLUMNS} FROM dead_letters
        WHERE consumer = ANY($1::text[]) AND resolved_at IS NULL
          AND retry_requested_at IS NOT NULL
        ORDER BY position
        """,
        list(consumers),
    )
    return [_letter(row) for row in rows]


async def open_in_stream(db: Db, consumer: str, stream_id: str) -> list[DeadLetter]:
    rows = await db.fetch(
        f"""
        SELECT {_COLUMNS} FROM dead_letters
        WHERE consumer = $1 AND stream_id = $2 AND resolved_at IS NULL ORDER BY position
        """,
        consumer,
        stream_id,
    )
    return [_letter(row) for row in rows]


async def resolve(db: Db, ids: list[int]) -> None:
    await db.execute(
        "UPDATE dead_letters SET resolved_at = now(), updated_at = now() WHERE id = ANY($1)", ids
    )


async def failed_again(db: Db, letter_id: int, error: str) -> None:
    await db.execute(
        """
        UPDATE dead_letters SET error = $2, attempts = attempts + 1, updated_at = now(),
            retry_requested_at = NULL
        WHERE id = $1
        """,
        letter_id,
        error[:_ERROR_LIMIT],
    )


async def request_retry(db: Db, letter_id: int) -> DeadLetter | None:
    """Marks an open dead letter for its consumer to try again; None if there is no such one."""
    row = await db.fetchrow(
        f"""
        UPDATE dead_letters SET retry_requested_at = now(), updated_at = now()
        WHERE id = $1 AND resolved_at IS NULL
        RETURNING {_COLUMNS}
        """,
        letter_id,
    )
    if row is not None:
        # Consumers wait on the log's wake-up channel: this makes them look at once.
        await db.execute("SELECT pg_notify('deployx_events', '')")
    return _letter(row) if row is not None else None


async def get(db: Db, letter_id: int) -> DeadLetter | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = $1", letter_id)
    return _letter(row) if row is not None else None


async def page(
    db: Db, *, open_only: bool, consumer: str | None, limit: int, offset: int
) -> tuple[list[DeadLetter], int]:
    where = "($1::bool IS FALSE OR resolved_at IS NULL) AND ($2::text IS NULL OR consumer = $2)"
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM dead_letters WHERE {where} ORDER BY id DESC LIMIT $3 OFFSET $4",
        open_only,
        consumer,
        limit,
        offset,
    )
    total = await db.fetchval(
        f"SELECT count(*) FROM dead_letters WHERE {where}", open_only, consumer
    )
    return [_letter(row) for row in rows], int(total)


async def open_counts(db: Db) -> dict[str, int]:
    """Open dead letters per consumer, for /metrics and /readyz."""
    rows = await db.fetch(
        "SELECT consumer, count(*) AS n FROM dead_letters WHERE resolved_at IS NULL GROUP BY 1"
    )
    return {row["consumer"]: int(row["n"]) for row in rows}


def _letter(row: asyncpg.Record) -> DeadLetter:
    return DeadLetter(**dict(row))
