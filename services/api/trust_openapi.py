"""The OpenAPI entries of the webhook and audit routes, added to the document's own."""

from __future__ import annotations

from typing import Any

from events.codec import EVENT_TYPES
from services.api.audit import MAX_OFFSET, MAX_USER
from services.api.webhooks import STATUSES, EventTypes
from services.domain.webhooks import WebhookInput
from services.infra.audit_log import AuditPage
from services.infra.webhook_deliveries import Delivery, DeliveryPage
from services.infra.webhook_store import Webhook, WebhookPage

TYPES: list[Any] = [
    WebhookInput,
    Webhook,
    WebhookPage,
    Delivery,
    DeliveryPage,
    AuditPage,
    EventTypes,
]


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "allowEmptyValue": True, "schema": schema}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_PAGE = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
    _query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}),
]
_AUDIT_FILTERS = [
    _query("user", {"type": "string", "maxLength": MAX_USER}),
    _query("type", {"type": "string", "enum": sorted(EVENT_TYPES)}),
    _query("task_id", {"type": "string", "format": "uuid"}),
    _query("since", {"type": "string", "format": "date-time"}),
    _query("until", {"type": "string", "format": "date-time"}),
]
_ID, _EVENT_ID = _path("id"), _path("event_id")

# As openapi._ROUTES: (method, path, summary, body, status, response, parameters, open)
ROUTES: list[tuple[str, str, str, Any, int, Any, list[dict[str, Any]], bool]] = [
    ("get", "/api/event-types", "Every event type of the log", None, 200, EventTypes, [], False),
    ("post", "/api/webhooks", "Subscribe a URL to events (admin)", WebhookInput, 201, Webhook,
     [], False),
    ("get", "/api/webhooks", "Webhook subscriptions (admin)", None, 200, WebhookPage, _PAGE,
     False),
    ("get", "/api/webhooks/{id}", "Get a subscription (admin)", None, 200, Webhook, [_ID],
     False),
    ("delete", "/api/webhooks/{id}", "Delete a subscription and its deliveries (admin)", None,
     204, None, [_ID], False),
    ("get", "/api/webhooks/{id}/deliveries",
     "Its deliveries, newest first, with every attempt (admin)", None, 200, DeliveryPage,
     [_ID, _query("status", {"type": "string", "enum": list(STATUSES)}), *_PAGE], False),
    ("post", "/api/webhooks/{id}/deliveries/{event_id}/resend",
     "Deliver an event again (admin)", None, 202, Delivery, [_ID, _EVENT_ID], False),
    ("post", "/api/webhooks/{id}/test", "Queue a signed WebhookTest delivery (admin)", None, 202,
     Delivery, [_ID], False),
    ("get", "/api/audit", "Every event, newest first, filtered (admin)", None, 200, AuditPage,
     _AUDIT_FILTERS + _PAGE, False),
]  # fmt: skip
