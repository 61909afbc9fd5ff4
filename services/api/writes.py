"""Running a command from a view: idempotency, the handler, and waiting for read-your-writes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from events.codec import RecordedEvent
from services.api.idempotency import IdempotentCall, StoredResponse, run_once
from services.api.keys import POOL, SETTINGS, WATCHER, principal_of
from services.api.responses import ApiError
from services.engine.read_your_writes import ProjectionLagging
from services.infra.auth import Principal

IDEMPOTENCY_HEADER = "Idempotency-Key"


def now() -> datetime:
    return datetime.now(UTC)


def writer(request: web.Request) -> Principal:
    principal = principal_of(request)
    if not principal.can_write:
        raise ApiError(403, "forbidden", f"the {principal.role} role may only read")
    return principal


def admin(request: web.Request) -> Principal:
    principal = principal_of(request)
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "only an admin may do this")
    return principal


def metadata(request: web.Request, principal: Principal) -> dict[str, Any]:
    """Who asked and through which request: kept with every event for the audit trail."""
    meta: dict[str, Any] = {"user": principal.user, "role": principal.role}
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        meta["request_id"] = request_id
    return meta


async def settled(
    request: web.Request, recorded: Iterable[RecordedEvent], projections: Iterable[str]
) -> None:
    """Returns once the named read tables show the recorded events."""
    timeout = request.app[SETTINGS].read_your_writes_timeout
    try:
        await request.app[WATCHER].wait_for(recorded, projections, timeout)
    except TimeoutError:
        raise ProjectionLagging() from None


async def respond_once(
    request: web.Request,
    principal: Principal,
    body: bytes,
    handler: Callable[[IdempotentCall], Awaitable[StoredResponse]],
) -> web.Response:
    """Runs handler, or replays the first answer when the Idempotency-Key was seen before."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    fingerprint = f"{request.method} {request.path}\n".encode() + body
    stored = await run_once(request.app[POOL], principal.user, key, fingerprint, handler)
    if not stored.body:
        return web.Response(status=stored.status)
    return web.Response(body=stored.body, status=stored.status, content_type="application/json")
