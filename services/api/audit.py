"""GET /api/audit (admin): the whole log, newest first, filtered by user, type, task, time."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from aiohttp import web

from events.codec import EVENT_TYPES
from services.api.keys import POOL
from services.api.responses import NUL, NUL_REASON, json_response, query_int
from services.api.writes import admin
from services.domain.errors import ValidationFailed
from services.infra.audit_log import AuditFilter, audit_page

routes = web.RouteTableDef()
MAX_OFFSET = 10_000_000
MAX_USER = 200


def _time(params: Mapping[str, str], name: str) -> datetime | None:
    raw = params.get(name) or None
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(name, f"must be an ISO 8601 time, got {raw[:50]!r}") from None
    if parsed.tzinfo is None:
        raise ValidationFailed(name, "must be an ISO 8601 time with an offset (or Z)")
    return parsed


def audit_filter(params: Mapping[str, str]) -> AuditFilter:
    user = params.get("user") or None
    if user is not None and (NUL in user or len(user) > MAX_USER):
        reason = NUL_REASON if NUL in user else f"must be at most {MAX_USER} characters"
        raise ValidationFailed("user", reason)
    event_type = params.get("type") or None
    if event_type is not None and event_type not in EVENT_TYPES:
        raise ValidationFailed(
            "type", f"{event_type[:50]!r} is not an event type; known: {', '.join(EVENT_TYPES)}"
        )
    task_id = params.get("task_id") or None
    if task_id is not None:
        try:
            task_id = str(uuid.UUID(task_id))
        except ValueError:
            raise ValidationFailed("task_id", "must be a UUID") from None
    since, until = _time(params, "since"), _time(params, "until")
    if since is not None and until is not None and since > until:
        raise ValidationFailed("until", "must not be before since")
    return AuditFilter(
        user=user,
        type=event_type,
        task_id=task_id,
        since=since,
        until=until,
        limit=query_int(params, "limit", 50, 1, 1000),
        offset=query_int(params, "offset", 0, 0, MAX_OFFSET),
    )


@routes.get("/api/audit")
async def audit(request: web.Request) -> web.Response:
    admin(request)
    return json_response(await audit_page(request.app[POOL], audit_filter(request.query)))
