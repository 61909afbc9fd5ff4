"""Admin routes for what the pipeline set aside: dead letters, refused device messages."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import msgspec
from aiohttp import web

from services.api.keys import POOL
from services.api.responses import NUL, NUL_REASON, ApiError, json_response, query_int
from services.api.writes import admin
from services.domain.errors import NotFound, ValidationFailed
from services.infra import dead_letters
from services.infra.dead_letters import DeadLetter

routes = web.RouteTableDef()
MAX_OFFSET = 10_000_000
MAX_LETTER_ID = 2**63 - 1


class DeadLetterPage(msgspec.Struct):
    items: list[DeadLetter]
    total: int


class RejectedMessage(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    source: str
    reason: str
    sample: str
    count: int
    first_seen: datetime
    last_seen: datetime


class RejectedMessagePage(msgspec.Struct):
    items: list[RejectedMessage]
    total: int


def _text(params: Mapping[str, str], name: str) -> str | None:
    raw = params.get(name) or None
    if raw is not None and NUL in raw:
        raise ValidationFailed(name, NUL_REASON)
    return raw


def _bool(params: Mapping[str, str], name: str, default: bool) -> bool:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if raw not in ("true", "false"):
        raise ValidationFailed(name, f"must be true or false, got {raw!r}")
    return raw == "true"


@routes.get("/api/admin/dead-letters")
async def list_dead_letters(request: web.Request) -> web.Response:
    admin(request)
    params = request.query
    items, total = await dead_letters.page(
        request.app[POOL],
        open_only=_bool(params, "open", True),
        consumer=_text(params, "consumer"),
        limit=query_int(params, "limit", 50, 1, 1000),
        offset=query_int(params, "offset", 0, 0, MAX_OFFSET),
    )
    return json_response(DeadLetterPage(items, total))


@routes.post("/api/admin/dead-letters/{id}/retry")
async def retry_dead_letter(request: web.Request) -> web.Response:
    admin(request)
    raw = request.match_info["id"]
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LETTER_ID:
        raise NotFound(f"dead letter {raw} does not exist")
    pool = request.app[POOL]
    letter = await dead_letters.request_retry(pool, int(raw))
    if letter is None:
        if await dead_letters.get(pool, int(raw)) is None:
            raise NotFound(f"dead letter {raw} does not exist")
        raise ApiError(409, "conflict", f"dead letter {raw} is resolved already")
    return json_response(letter, status=202)


@routes.get("/api/admin/rejected-messages")
async def list_rejected_messages(request: web.Request) -> web.Response:
    admin(request)
    params = request.query
    device = _text(params, "device_id")
    limit = query_int(params, "limit", 50, 1, 1000)
    offset = query_int(params, "offset", 0, 0, MAX_OFFSET)
    pool = request.app[POOL]
    where = "$1::text IS NULL OR device_id = $1"
    rows = await pool.fetch(
        f"""
        SELECT device_id, source, reason, sample, count, first_seen, last_seen
        FROM rejected_messages WHERE {where} ORDER BY last_seen DESC LIMIT $2 OFFSET $3
        """,
        device,
        limit,
        offset,
    )
    total = await pool.fetchval(f"SELECT count(*) FROM rejected_messages WHERE {where}", device)
    items = [RejectedMessage(**dict(row)) for row in rows]
    return json_response(RejectedMessagePage(items, int(total)))
