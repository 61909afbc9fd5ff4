"""Webhook routes (admin): subscriptions, their deliveries, a re-send, a test delivery."""

from __future__ import annotations

import uuid
from typing import get_args

import msgspec
from aiohttp import web

from events.codec import EVENT_TYPES, Envelope
from services.api.keys import POOL, SETTINGS
from services.api.responses import ApiError, decode_body, json_response, query_int
from services.api.writes import admin, now
from services.domain.errors import NotFound, ValidationFailed
from services.domain.webhooks import TEST_EVENT, WebhookInput, check_webhook
from services.infra import webhook_deliveries, webhook_store
from services.infra.webhook_deliveries import DeliveryStatus

routes = web.RouteTableDef()
MAX_OFFSET = 10_000_000
STATUSES: tuple[str, ...] = get_args(DeliveryStatus)


class EventTypes(msgspec.Struct):
    items: list[str]


def _uuid(request: web.Request, name: str, what: str) -> str:
    raw = request.match_info[name]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound(f"{what} {raw} does not exist") from None


async def _existing(request: web.Request) -> str:
    webhook_id = _uuid(request, "id", "webhook")
    if await webhook_store.get(request.app[POOL], webhook_id) is None:
        raise NotFound(f"webhook {webhook_id} does not exist")
    return webhook_id


@routes.get("/api/event-types")
async def event_types(_request: web.Request) -> web.Response:
    """Every event type of the log: what a webhook may subscribe to, what the audit filters."""
    return json_response(EventTypes(sorted(EVENT_TYPES)))


@routes.post("/api/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    principal = admin(request)
    spec = check_webhook(decode_body(await request.read(), WebhookInput), EVENT_TYPES)
    webhook = await webhook_store.create(request.app[POOL], spec, principal.user)
    return json_response(webhook, status=201)


@routes.get("/api/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    admin(request)
    limit = query_int(request.query, "limit", 100, 1, 1000)
    offset = query_int(request.query, "offset", 0, 0, MAX_OFFSET)
    return json_response(await webhook_store.page(request.app[POOL], limit, offset))


@routes.get("/api/webhooks/{id}")
async def get_webhook(request: web.Request) -> web.Response:
    admin(request)
    webhook_id = _uuid(request, "id", "webhook")
    webhook = await webhook_store.get(request.app[POOL], webhook_id)
    if webhook is None:
        raise NotFound(f"webhook {webhook_id} does not exist")
    return json_response(webhook)


@routes.delete("/api/webhooks/{id}")
async def delete_webhook(request: web.Request) -> web.Response:
    admin(request)
    webhook_id = _uuid(request, "id", "webhook")
    if not await webhook_store.delete(request.app[POOL], webhook_id):
        raise NotFound(f"webhook {webhook_id} does not exist")
    return web.Response(status=204)


@routes.get("/api/webhooks/{id}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    admin(request)
    webhook_id = await _existing(request)
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise ValidationFailed("status", f"must be one of {', '.join(STATUSES)}")
    found = await webhook_deliveries.deliveries(
        request.app[POOL],
        webhook_id,
        status,  # type: ignore[arg-type]  # checked against STATUSES above
        query_int(request.query, "limit", 50, 1, 1000),
        query_int(request.query, "offset", 0, 0, MAX_OFFSET),
    )
    return json_response(found)


@routes.post("/api/webhooks/{id}/deliveries/{event_id}/resend")
async def resend(request: web.Request) -> web.Response:
    admin(request)
    webhook_id = await _existing(request)
    event_id = _uuid(request, "event_id", "delivery")
    pool, window = request.app[POOL], request.app[SETTINGS].webhook_retry_seconds
    queued = await webhook_deliveries.resend(pool, webhook_id, event_id, window)
    if queued is None:
        if await webhook_deliveries.delivery(pool, webhook_id, event_id) is None:
            raise NotFound(f"webhook {webhook_id} has no delivery {event_id}")
        raise ApiError(409, "conflict", f"delivery {event_id} is pending already")
    return json_response(queued, 202)


@routes.post("/api/webhooks/{id}/test")
async def send_test(request: web.Request) -> web.Response:
    """Queues a WebhookTest delivery, signed and sent like any other, in a queue of its own."""
    principal = admin(request)
    webhook_id = await _existing(request)
    event_id = str(uuid.uuid4())
    body = msgspec.json.encode(
        Envelope(
            id=event_id,
            type=TEST_EVENT,
            stream_id=f"webhook-{webhook_id}",
            version=1,
            position=0,
            recorded_at=now(),
            data=msgspec.Raw(msgspec.json.encode({"webhook_id": webhook_id})),
            metadata={"user": principal.user, "role": principal.role},
        )
    )
    pool, window = request.app[POOL], request.app[SETTINGS].webhook_retry_seconds
    await webhook_deliveries.enqueue_test(pool, webhook_id, event_id, body, window)
    return json_response(await webhook_deliveries.delivery(pool, webhook_id, event_id), 202)
