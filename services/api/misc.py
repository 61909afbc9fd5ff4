"""Who am I, stats, schedule preview, health, readiness and metrics."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from aiohttp import web

from projections.stats import stats as read_stats
from services.api.keys import NATS, POOL, SETTINGS, principal_of
from services.api.responses import decode_body, json_response
from services.api.writes import now
from services.domain.errors import ValidationFailed
from services.domain.recurrence import PREVIEW_MAX, RecurrenceType, parse_schedule, preview
from services.domain.recurrence_fields import require_in_range
from services.infra.health import readiness
from services.infra.metrics import CONTENT_TYPE, exposition

routes = web.RouteTableDef()


class PreviewRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    recurrence_type: RecurrenceType
    recurrence_config: dict[str, Any] = {}
    count: Annotated[int, msgspec.Meta(ge=1, le=PREVIEW_MAX)] = 10
    after: datetime | None = None


class PreviewResponse(msgspec.Struct):
    times: list[datetime]


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    """The user and role of the token (the console shows them after sign-in)."""
    return json_response(principal_of(request))


@routes.get("/api/schedule/stats")
async def stats(request: web.Request) -> web.Response:
    owner = principal_of(request).owner_filter()
    return json_response(await read_stats(request.app[POOL], owner))


@routes.post("/api/schedule/preview")
async def schedule_preview(request: web.Request) -> web.Response:
    asked = decode_body(await request.read(), PreviewRequest)
    after = asked.after or now()
    if after.tzinfo is None:
        raise ValidationFailed("after", "must be an ISO 8601 time with an offset")
    require_in_range("after", after)
    schedule = parse_schedule(asked.recurrence_type, asked.recurrence_config, anchor=after)
    return json_response(PreviewResponse(times=preview(schedule, after, asked.count)))


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    ready, body = await readiness(
        request.app[POOL], request.app[NATS], settings.stuck_after_seconds
    )
    return json_response(body, status=200 if ready else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """This process's metrics: the same as on its health port (services/infra/metrics.py)."""
    response = web.Response(body=await exposition(request.app[POOL]))
    response.content_type = CONTENT_TYPE
    return response
