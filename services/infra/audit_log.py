"""The audit log as admins read it: every event, newest first, filtered by who, what, when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from services.infra.db import Db


class AuditFilter(msgspec.Struct, frozen=True, kw_only=True):
    user: str | None = None
    type: str | None = None
    task_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    offset: int = 0


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One event: who (metadata.user, null for the system's own), what, when, to which task."""

    position: int
    id: str
    type: str
    stream_id: str
    version: int
    recorded_at: datetime
    user: str | None
    task_id: str | None
    data: msgspec.Raw
    metadata: msgspec.Raw


class AuditPage(msgspec.Struct):
    items: list[AuditEntry]
    total: int


def _where(query: AuditFilter) -> tuple[str, list[Any]]:
    """Only the filters given, so that the planner can use the task index (events_by_task)."""
    clauses: list[str] = []
    args: list[Any] = []
    if query.user is not None:
        args.append(query.user)
        clauses.append(f"metadata ->> 'user' = ${len(args)}")
    if query.type is not None:
        args.append(query.type)
        clauses.append(f"type = ${len(args)}")
    if query.task_id is not None:
        args.append(query.task_id)
        clauses.append(f"data ? 'task_id' AND data ->> 'task_id' = ${len(args)}")
    if query.since is not None:
        args.append(query.since)
        clauses.append(f"recorded_at >= ${len(args)}")
    if query.until is not None:
        args.append(query.until)
        clauses.append(f"recorded_at <= ${len(args)}")
    return (" AND ".join(clauses) or "true"), args


async def audit_page(db: Db, query: AuditFilter) -> AuditPage:
    where, args = _where(query)
    rows = await db.fetch(
        f"""
        SELECT position, id::text, type, stream_id, version, recorded_at,
               metadata ->> 'user' AS user, data ->> 'task_id' AS task_id,
               data::text AS data, metadata::text AS metadata
        FROM events WHERE {where}
        ORDER BY tx_id DESC, position DESC
        LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}
        """,
        *args,
        query.limit,
        query.offset,
    )
    total = await db.fetchval(f"SELECT count(*) FROM events WHERE {where}", *args)
    items = [
        AuditEntry(
            **{
                **dict(row),
                "data": msgspec.Raw(row["data"].encode()),
                "metadata": msgspec.Raw(row["metadata"].encode()),
            }
        )
        for row in rows
    ]
    return AuditPage(items, int(total))
