"""Webhook subscriptions in PostgreSQL: created, listed and deleted by admins."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec

from services.domain.webhooks import WebhookSpec
from services.infra.db import Db


class Webhook(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription as the API shows it: never its secret."""

    id: str
    url: str
    event_types: list[str]
    task_id: str | None
    created_by: str
    created_at: datetime


class WebhookPage(msgspec.Struct):
    items: list[Webhook]
    total: int


_WEBHOOK = "id::text, url, event_types, task_id::text, created_by, created_at"


def _webhook(row: asyncpg.Record) -> Webhook:
    return Webhook(**dict(row))


async def create(db: Db, spec: WebhookSpec, user: str) -> Webhook:
    row = await db.fetchrow(
        f"""
        INSERT INTO webhooks (id, url, event_types, secret, task_id, created_by)
        VALUES ($1, $2, $3, $4, $5::uuid, $6) RETURNING {_WEBHOOK}
        """,
        uuid.uuid4(),
        spec.url,
        spec.event_types,
        spec.secret,
        spec.task_id,
        user,
    )
    assert row is not None
    return _webhook(row)


async def page(db: Db, limit: int, offset: int) -> WebhookPage:
    rows = await db.fetch(
        f"SELECT {_WEBHOOK} FROM webhooks ORDER BY created_at DESC, id LIMIT $1 OFFSET $2",
        limit,
        offset,
    )
    total = await db.fetchval("SELECT count(*) FROM webhooks")
    return WebhookPage([_webhook(row) for row in rows], int(total))


async def get(db: Db, webhook_id: str) -> Webhook | None:
    row = await db.fetchrow(f"SELECT {_WEBHOOK} FROM webhooks WHERE id = $1", webhook_id)
    return _webhook(row) if row is not None else None


async def delete(db: Db, webhook_id: str) -> bool:
    """Removes a subscription with its deliveries; whether there was one."""
    return bool(await db.fetch("DELETE FROM webhooks WHERE id = $1 RETURNING 1", webhook_id))
