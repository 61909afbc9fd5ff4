"""Senders' side of the delivery queue: leasing due heads, and recording what came of them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
import msgspec

from events.codec import Undecodable, encode_envelope
from services.infra.db import Db
from services.infra.store import Connection, to_recorded
from services.infra.webhook_queue import Key


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery a sender has leased: it sends it, then reports with `attempt`.

    body: the event's envelope, as the relay publishes it (or a test delivery's own), else
    why there is none to send.
    """

    webhook_id: str
    event_id: str
    event_type: str
    order_key: str
    body: bytes | str
    attempt: int
    url: str
    secret: str


# The event's columns as store.to_recorded reads them.
_EVENT = """
    e.id::text AS id, e.stream_id, e.version, e.position, e.tx_id::text::bigint AS tx_id,
    e.category, e.type, e.schema_version, e.data::text AS data, e.metadata::text AS metadata,
    e.recorded_at
"""
_CLAIM = f"""
WITH picked AS (
    SELECT d.row_id
    FROM webhooks w
    CROSS JOIN LATERAL (
        SELECT d.ctid AS row_id, d.next_attempt_at
        FROM webhook_deliveries d
        WHERE d.webhook_id = w.id AND d.status = 'pending' AND d.is_head
          AND d.next_attempt_at <= now()
          AND (d.leased_until IS NULL OR d.leased_until <= now())
        ORDER BY d.next_attempt_at
        LIMIT greatest($2::int - coalesce(
            (SELECT b.n FROM unnest($3::uuid[], $4::int[]) AS b(id, n) WHERE b.id = w.id), 0), 0)
        FOR UPDATE SKIP LOCKED
    ) d
    ORDER BY d.next_attempt_at
    LIMIT $1
), claimed AS (
    UPDATE webhook_deliveries d
    SET leased_until = now() + make_interval(secs => $5), attempts = d.attempts + 1
    FROM webhooks w
    -- By the rows' physical ids (locked above, so they cannot move): a TID scan, whatever
    -- the planner guesses of how many were picked.
    WHERE d.ctid = ANY (ARRAY(SELECT row_id FROM picked)) AND w.id = d.webhook_id
    RETURNING d.webhook_id, d.event_id, d.event_type, d.position AS at, d.order_key, d.body,
        d.attempts, w.url, w.secret
)
SELECT c.webhook_id::text AS hook, c.event_id::text AS delivery, c.event_type, c.order_key,
    c.body, c.attempts AS attempt, c.url, c.secret, e.id IS NOT NULL AS found, {_EVENT}
FROM claimed c LEFT JOIN events e ON c.body IS NULL AND e.position = c.at
"""


async def claim(
    db: Db, limit: int, per_webhook: int, busy: dict[str, int], lease_seconds: float
) -> list[Claimed]:
    """Leases up to `limit` due queue heads, at most per_webhook of a subscription counting
    the `busy` ones this sender has in flight already. SKIP LOCKED: replicas never wait."""
    rows = await db.fetch(
        _CLAIM,
        limit,
        per_webhook,
        list(busy),
        list(busy.values()),
        lease_seconds,
    )
    return [
        Claimed(
            webhook_id=row["hook"],
            event_id=row["delivery"],
            event_type=row["event_type"],
            order_key=row["order_key"],
            body=row["body"] or _body(row),
            attempt=row["attempt"],
            url=row["url"],
            secret=row["secret"],
        )
        for row in rows
    ]


def _body(row: asyncpg.Record) -> bytes | str:
    """The event read with the claim, as the relay encodes it; or why it cannot be sent."""
    if not row["found"]:
        return "the event is no longer in the log"
    recorded = to_recorded(row)
    if isinstance(recorded.event, Undecodable):
        return f"this version cannot read the event: {recorded.event.error}"
    return encode_envelope(recorded)


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt's result, recorded with the delivery's next state."""

    webhook_id: str
    event_id: str
    attempt: int
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float
    retry_in: float  # seconds until the next try, if it failed and time is left


# Logs every attempt; moves the delivery on only if it is still the attempt that leased it
# (a lease that ran out may have been taken by another sender meanwhile).
_COMPLETE = """
WITH r AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::timestamptz[], $5::int[],
        $6::text[], $7::float8[], $8::float8[])
        AS r(webhook_id, event_id, attempt, attempted_at, status_code, error, duration_ms, retry_in)
), logged AS (
    INSERT INTO webhook_attempts (webhook_id, event_id, attempted_at, status_code, error,
        duration_ms)
    SELECT r.webhook_id, r.event_id, r.attempted_at, r.status_code, r.error, r.duration_ms
    FROM r JOIN webhook_deliveries d USING (webhook_id, event_id)
)
UPDATE webhook_deliveries d SET
    status = CASE WHEN r.error IS NULL THEN 'delivered'
                  WHEN now() >= d.give_up_at THEN 'failed' ELSE 'pending' END,
    completed_at = CASE WHEN r.error IS NULL OR now() >= d.give_up_at THEN now() END,
    is_head = r.error IS NOT NULL AND now() < d.give_up_at,
    next_attempt_at = least(now() + make_interval(secs => r.retry_in), d.give_up_at),
    leased_until = NULL,
    last_error = r.error
FROM r
WHERE d.webhook_id = r.webhook_id AND d.event_id = r.event_id
  AND d.attempts = r.attempt AND d.status = 'pending'
RETURNING d.webhook_id::text, d.order_key, d.status
"""


async def complete(conn: Connection, outcomes: Sequence[Outcome]) -> list[Key]:
    """Records attempts; the queues whose head ended (delivered or failed), to promote."""
    try:
        async with conn.transaction():  # a savepoint, when the caller's transaction is open
            rows = await _complete(conn, outcomes)
    except asyncpg.ForeignKeyViolationError:
        # A subscription deleted meanwhile: its deliveries are gone, so are its attempts.
        rows = await _complete(conn, outcomes)
    return [(row["webhook_id"], row["order_key"]) for row in rows if row["status"] != "pending"]


async def _complete(db: Db, outcomes: Sequence[Outcome]) -> list[asyncpg.Record]:
    return await db.fetch(
        _COMPLETE,
        [o.webhook_id for o in outcomes],
        [o.event_id for o in outcomes],
        [o.attempt for o in outcomes],
        [o.attempted_at for o in outcomes],
        [o.status_code for o in outcomes],
        [o.error for o in outcomes],
        [o.duration_ms for o in outcomes],
        [o.retry_in for o in outcomes],
    )
