"""A subscription's deliveries as admins see them, and what they may do: re-send, test."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import asyncpg
import msgspec

from services.domain.webhooks import TEST_EVENT
from services.infra.db import Db
from services.infra.webhook_queue import promote

DeliveryStatus = Literal["pending", "delivered", "failed"]
# The attempts an answer lists per delivery: the latest ones (a dead endpoint makes ~35 a day).
ATTEMPTS_SHOWN = 50


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One event for one subscription, and every attempt to deliver it (oldest first)."""

    event_id: str
    event_type: str
    position: int
    task_id: str | None
    status: DeliveryStatus
    created_at: datetime
    next_attempt_at: datetime | None
    give_up_at: datetime
    completed_at: datetime | None
    last_error: str | None
    attempts: list[Attempt]


class DeliveryPage(msgspec.Struct):
    items: list[Delivery]
    total: int


_DELIVERY = """
    event_id::text, event_type, position, task_id, status, created_at,
    CASE WHEN status = 'pending' THEN greatest(next_attempt_at, leased_until) END
        AS next_attempt_at,
    give_up_at, completed_at, last_error
"""


async def deliveries(
    db: Db, webhook_id: str, status: DeliveryStatus | None, limit: int, offset: int
) -> DeliveryPage:
    """A subscription's deliveries, newest first, each with its latest attempts."""
    where = "webhook_id = $1 AND ($2::text IS NULL OR status = $2)"
    rows = await db.fetch(
        f"""
        SELECT {_DELIVERY} FROM webhook_deliveries WHERE {where}
        ORDER BY created_at DESC, position DESC LIMIT $3 OFFSET $4
        """,
        webhook_id,
        status,
        limit,
        offset,
    )
    total = await db.fetchval(
        f"SELECT count(*) FROM webhook_deliveries WHERE {where}", webhook_id, status
    )
    tried = await _attempts(db, webhook_id, [row["event_id"] for row in rows])
    items = [Delivery(**dict(row), attempts=tried.get(row["event_id"], [])) for row in rows]
    return DeliveryPage(items, int(total))


async def delivery(db: Db, webhook_id: str, event_id: str) -> Delivery | None:
    row = await db.fetchrow(
        f"SELECT {_DELIVERY} FROM webhook_deliveries WHERE webhook_id = $1 AND event_id = $2",
        webhook_id,
        event_id,
    )
    if row is None:
        return None
    tried = await _attempts(db, webhook_id, [event_id])
    return Delivery(**dict(row), attempts=tried.get(event_id, []))


async def _attempts(db: Db, webhook_id: str, event_ids: list[str]) -> dict[str, list[Attempt]]:
    rows = await db.fetch(
        """
        SELECT event_id::text, attempted_at, status_code, error, duration_ms FROM (
            SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY id DESC) AS latest
            FROM webhook_attempts WHERE webhook_id = $1 AND event_id = ANY($2::uuid[])
        ) a WHERE latest <= $3 ORDER BY id
        """,
        webhook_id,
        event_ids,
        ATTEMPTS_SHOWN,
    )
    found: dict[str, list[Attempt]] = {}
    for row in rows:
        values = dict(row)
        found.setdefault(values.pop("event_id"), []).append(Attempt(**values))
    return found


async def resend(
    pool: asyncpg.Pool, webhook_id: str, event_id: str, give_up_seconds: float
) -> Delivery | None:
    """Queues a delivered or failed delivery again, with a fresh retry window, and answers it
    as queued (a sender may deliver it the moment this commits); None: it is pending already.
    It goes when its task's queue gets to it."""
    async with pool.acquire() as conn, conn.transaction():
        order_key = await conn.fetchval(
            """
            UPDATE webhook_deliveries SET status = 'pending', is_head = false, attempts = 0,
                next_attempt_at = now(), leased_until = NULL, completed_at = NULL,
                last_error = NULL, give_up_at = now() + make_interval(secs => $3)
            WHERE webhook_id = $1 AND event_id = $2 AND status <> 'pending'
            RETURNING order_key
            """,
            webhook_id,
            event_id,
            give_up_seconds,
        )
        if order_key is None:
            return None
        await promote(conn, [(webhook_id, order_key)])
        return await delivery(conn, webhook_id, event_id)


async def enqueue_test(
    db: Db, webhook_id: str, event_id: str, body: bytes, give_up_seconds: float
) -> None:
    """A test delivery: a body of its own, in a queue of its own, sent like any other."""
    order_key = f"test:{event_id}"
    await db.execute(
        """
        INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, position, log_tx,
            order_key, body, give_up_at)
        VALUES ($1, $2, $3, 0, '0', $4, $5, now() + make_interval(secs => $6))
        """,
        webhook_id,
        event_id,
        TEST_EVENT,
        order_key,
        body,
        give_up_seconds,
    )
    await promote(db, [(webhook_id, order_key)])
