"""The delivery queue: enqueued from the log, claimed by senders, completed, heads handed on.

Deliveries of one subscription and order key (the event's task, else its stream) leave in log
order: only a queue's head may be claimed. Heads are only ever set by `promote`, which runs
after the commit of anything that may leave a queue without one (an enqueue, a delivery that
ended, a re-send): whichever of two racing writers runs it last sees both commits.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable

import asyncpg
import msgspec

from services.infra.db import Db
from services.infra.store import LOG_HORIZON, Connection, LogCursor

WAKE_CHANNEL = "deployx_webhooks"
Key = tuple[str, str]  # (webhook id, order key)

# The next batch of the log after the cursor (the gap-free rule of store.read_after), each
# event matched against the subscriptions; returns the batch's last place and the queues
# that got deliveries (one row each; a row with nulls when none did).
_ENQUEUE = f"""
WITH batch AS (
    SELECT id, position, tx_id, type, stream_id, data ->> 'task_id' AS task_id, recorded_at
    FROM events
    WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)
      AND tx_id < {LOG_HORIZON}
    ORDER BY tx_id, position
    LIMIT $3
), last AS (
    SELECT tx_id::text::bigint AS tx_id, position FROM batch
    ORDER BY batch.tx_id DESC, batch.position DESC LIMIT 1
), added AS (
    INSERT INTO webhook_deliveries
        (webhook_id, event_id, event_type, position, log_tx, order_key, task_id, give_up_at)
    SELECT w.id, b.id, b.type, b.position, b.tx_id, coalesce(b.task_id, b.stream_id),
           b.task_id, now() + make_interval(secs => $4)
    FROM batch b
    JOIN webhooks w ON b.type = ANY (w.event_types)
        AND (w.task_id IS NULL OR w.task_id::text = b.task_id)
        AND b.recorded_at >= w.created_at
    ON CONFLICT DO NOTHING
    RETURNING webhook_id, order_key
)
SELECT last.tx_id, last.position, keys.webhook_id::text AS webhook_id, keys.order_key
FROM last LEFT JOIN (SELECT DISTINCT webhook_id, order_key FROM added) keys ON true
"""

# The earliest pending delivery of each queue becomes its head, if the queue has none.
_PROMOTE = """
WITH promoted AS (
    UPDATE webhook_deliveries d SET is_head = true
    FROM unnest($1::uuid[], $2::text[]) AS k(webhook_id, order_key)
    CROSS JOIN LATERAL (
        SELECT q.event_id FROM webhook_deliveries q
        WHERE q.webhook_id = k.webhook_id AND q.order_key = k.order_key AND q.status = 'pending'
        ORDER BY q.log_tx, q.position LIMIT 1
    ) first
    WHERE d.webhook_id = k.webhook_id AND d.event_id = first.event_id AND NOT d.is_head
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries h
          WHERE h.webhook_id = k.webhook_id AND h.order_key = k.order_key
            AND h.status = 'pending' AND h.is_head
      )
    RETURNING 1
)
SELECT pg_notify($3, '') FROM (SELECT count(*) AS n FROM promoted) p WHERE p.n > 0
"""


@contextlib.asynccontextmanager
async def quick_commit(pool: asyncpg.Pool) -> AsyncIterator[Connection]:
    """A transaction whose commit waits for no flush to disk (synchronous_commit off).

    A sender commits a few times per round of deliveries; waiting each time for the disk made
    them wait on one another (a dead endpoint's quick failures took the healthy ones' turns).
    What a crash of PostgreSQL may forget of such commits, the last fraction of a second, is
    that a delivery was claimed, made or ended: it is sent again (at least once), and a queue
    left without its head is repaired by the sender's sweep.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = off")
        yield conn


class Enqueued(msgspec.Struct, frozen=True):
    cursor: LogCursor
    keys: list[Key]


async def enqueue_next(
    db: Db, cursor: LogCursor, batch: int, give_up_seconds: float
) -> Enqueued | None:
    """Deliveries for the next batch of the log; None when there is no visible event."""
    rows = await db.fetch(_ENQUEUE, str(cursor.tx_id), cursor.position, batch, give_up_seconds)
    if not rows:
        return None
    keys = [(row["webhook_id"], row["order_key"]) for row in rows if row["webhook_id"]]
    return Enqueued(LogCursor(rows[0]["tx_id"], rows[0]["position"]), keys)


async def promote(db: Db, keys: Iterable[Key]) -> None:
    """Gives each queue a head if it has pending deliveries and none; wakes the senders."""
    unique = sorted(set(keys))
    if unique:
        await db.execute(
            _PROMOTE, [key[0] for key in unique], [key[1] for key in unique], WAKE_CHANNEL
        )


async def headless(db: Db) -> list[Key]:
    """Queues with pending deliveries and no head: left so by a process that died between an
    enqueue's commit and its promote. The sender looks now and then."""
    rows = await db.fetch(
        """
        SELECT DISTINCT d.webhook_id::text, d.order_key FROM webhook_deliveries d
        WHERE d.status = 'pending' AND NOT d.is_head AND NOT EXISTS (
            SELECT 1 FROM webhook_deliveries h
            WHERE h.webhook_id = d.webhook_id AND h.order_key = d.order_key
              AND h.status = 'pending' AND h.is_head)
        """
    )
    return [(row["webhook_id"], row["order_key"]) for row in rows]


async def expire(db: Db, grace_seconds: float) -> list[Key]:
    """Ends as failed what is still pending `grace_seconds` past its retry window: deliveries
    that waited behind a failing head, or whose subscription rested, past the window."""
    rows = await db.fetch(
        """
        UPDATE webhook_deliveries SET status = 'failed', is_head = false, completed_at = now(),
            last_error = coalesce(last_error, 'not delivered within its retry window')
        WHERE status = 'pending' AND give_up_at < now() - make_interval(secs => $1)
          AND (leased_until IS NULL OR leased_until < now())
        RETURNING webhook_id::text, order_key
        """,
        grace_seconds,
    )
    return [(row["webhook_id"], row["order_key"]) for row in rows]
